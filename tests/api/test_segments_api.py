"""Audience segments over HTTP: a text/plain list of user ids streamed in, added or
removed; a bad line or segment name is 400 naming it, and nothing changes."""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.conftest import iso

SPEC: dict[str, Any] = {
    "name": "Insiders", "opens_at": iso(-60), "closes_at": iso(3600),
    "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 10}]}],
    "phases": [{"name": "insiders", "opens_at": iso(-30), "segments": ["insiders"]}]}
PATH = "/admin/v1/campaigns/gig/segments/insiders/members"


async def _chunks(n: int) -> AsyncIterator[bytes]:
    """`n` ids in chunks that split lines mid-way, as a network would."""
    body = "".join(f"member-{i}\r\n" for i in range(n)).encode()
    for start in range(0, len(body), 4093):
        yield body[start:start + 4093]


async def test_a_streamed_list_is_added_then_removed(api: Api) -> None:
    assert (await api.admin.put("/admin/v1/campaigns/gig", json=SPEC,
                                headers=api.op())).status == 201
    resp = await api.admin.post(PATH, data=_chunks(30_000),
                                headers={**api.op(), "Content-Type": "text/plain"})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"segment": "insiders", "changed": 30_000, "size": 30_000}
    claim = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ticket"},
                                  headers={"X-User-Id": "member-29999"})
    assert claim.status == 201
    resp = await api.admin.post(PATH + "?action=remove", data="member-1\n\nmember-2",
                                headers=api.op())
    assert await resp.json() == {"segment": "insiders", "changed": 2, "size": 29_998}
    claim = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ticket"},
                                  headers={"X-User-Id": "member-1"})
    assert claim.status == 403 and (await claim.json())["error"]["code"] == "not_eligible"
    stats = await (await api.admin.get("/admin/v1/campaigns/gig/stats",
                                       headers=api.viewer())).json()
    assert stats["segments"] == {"insiders": 29_998}


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    (PATH, "ann\nb d\ncat", 400, "line 2"),
    (PATH, "ann\n" + "x" * 200, 400, "line 2"),
    (PATH + "?action=drop", "ann", 400, "action"),
    ("/admin/v1/campaigns/gig/segments/in%20siders/members", "ann", 400, "segment"),
    ("/admin/v1/campaigns/nope/segments/insiders/members", "ann", 404, "nope"),
])
async def test_bad_uploads_are_refused_whole(api: Api, path: str, body: str, status: int,
                                             words: str) -> None:
    await api.admin.put("/admin/v1/campaigns/gig", json=SPEC, headers=api.op())
    resp = await api.admin.post(path, data=body, headers=api.op())
    answer = await resp.json()
    assert resp.status == status and words in answer["error"]["message"], answer
    stats = await api.engine.stats("gig")
    assert stats and stats.segments == {}


async def test_a_viewer_may_not_change_a_segment(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/gig", json=SPEC, headers=api.op())
    resp = await api.admin.post(PATH, data="ann", headers=api.viewer())
    assert resp.status == 403
