"""Presale codes and stepped prices over HTTP: codes issued, exported as CSV, claimed with, refused
in the JSON error shape when forged or spent, throttled when guessed."""

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.conftest import iso


def _spec() -> dict[str, Any]:
    """Times from now: a module-level spec would age while the suite runs before it."""
    return {
        "name": "Fan presale", "opens_at": iso(-60), "closes_at": iso(3600),
        "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 10}]}],
        "phases": [{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"]},
                   {"name": "public", "opens_at": iso(600)}]}


async def _codes(api: Api, cid: str = "gig", **batch: Any) -> list[str]:
    resp = await api.admin.post(f"/admin/v1/campaigns/{cid}/presale-codes",
                                json={"count": 3, "tier": "fan", **batch}, headers=api.op())
    assert resp.status == 201, await resp.text()
    number = (await resp.json())["batch"]
    resp = await api.admin.get(f"/admin/v1/campaigns/{cid}/presale-codes/{number}/codes.csv",
                               headers=api.op())
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    lines = (await resp.text()).splitlines()
    assert lines[0] == "code,batch,serial,tier,uses"
    return [line.split(",")[0] for line in lines[1:]]


async def _claim(api: Api, user: str, code: str | None = None) -> Any:
    body: dict[str, Any] = {"sku": "ticket"}
    if code is not None:
        body["code"] = code
    return await api.public.post("/v1/campaigns/gig/claims", json=body,
                                 headers={"X-User-Id": user})


async def test_issue_export_claim_and_stats(api: Api) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    assert resp.status == 201
    codes = await _codes(api, count=3)
    assert len(set(codes)) == 3
    assert (await _claim(api, "ann")).status == 409  # the public phase is not open yet
    resp = await _claim(api, "ann", codes[0])
    assert resp.status == 201, await resp.text()
    resp = await _claim(api, "bob", codes[0])
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "presale_code_used"
    assert "1 claims" in body["error"]["message"]
    stats = await (await api.admin.get("/admin/v1/campaigns/gig/stats",
                                       headers=api.viewer())).json()
    assert stats["presale_codes"][0] | {"created_at": None} == {
        "batch": 1, "count": 3, "tier": "fan", "uses": 1, "bind_to_user": False,
        "created_at": None, "codes_used": 1, "claims": 1}


async def test_forged_codes_are_403_then_429(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    real = (await _codes(api, count=1))[0]
    for attempt in range(5):
        resp = await _claim(api, "mallory", real[:-1] + ("A" if real[-1] != "A" else "B"))
        body = await resp.json()
        assert resp.status == 403 and body["error"]["code"] == "presale_code_invalid", attempt
    resp = await _claim(api, "mallory", real)
    assert resp.status == 429 and 1 <= int(resp.headers["Retry-After"]) <= 2
    assert (await resp.json())["error"]["code"] == "throttled"


async def test_guessing_from_many_users_behind_one_ip_is_429(api: Api) -> None:
    """200 users, one guess each, all from this test's one address: past the network's
    code-attempt burst (50, then 10 a second) they are throttled, naming the limit, with
    Retry-After; each user alone is far within their own limit."""
    await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    real = (await _codes(api, count=1))[0]
    batch, _, mac = real.split("-")
    answers = await asyncio.gather(*(_claim(api, f"guesser{n}", f"{batch}-{n}-{mac}")
                                     for n in range(2, 202)))
    statuses = Counter(r.status for r in answers)
    assert set(statuses) == {403, 429} and statuses[403] >= 50, statuses
    throttled = next(r for r in answers if r.status == 429)
    body = (await throttled.json())["error"]
    assert body["code"] == "throttled" and body["reason"] == "presale_code_network"
    assert body["message"].startswith("too many presale code attempts (per network: at "
                                      "most 50 at once, then 10 a second); retry in ")
    assert int(throttled.headers["Retry-After"]) == 1 and 0 < body["retry_after_ms"] <= 100


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/admin/v1/campaigns/gig/presale-codes", {"count": 0, "tier": "fan"}, 400,
     "invalid_request"),
    ("/admin/v1/campaigns/gig/presale-codes", {"count": 100_001, "tier": "fan"}, 400,
     "invalid_request"),
    ("/admin/v1/campaigns/gig/presale-codes", {"count": 1, "tier": "f an"}, 400,
     "invalid_request"),
    ("/admin/v1/campaigns/gig/presale-codes", {"count": 1}, 400, "invalid_request"),
    ("/admin/v1/campaigns/nope/presale-codes", {"count": 1, "tier": "fan"}, 404, "not_found"),
])
async def test_bad_batches_are_refused(api: Api, path: str, body: dict[str, Any], status: int,
                                       code: str) -> None:
    await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    resp = await api.admin.post(path, json=body, headers=api.op())
    answer = await resp.json()
    assert resp.status == status and answer["error"]["code"] == code, answer
    stats = await api.engine.stats("gig")
    assert stats and stats.presale_codes == []


async def test_export_of_an_unknown_batch_and_by_a_viewer(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    resp = await api.admin.get("/admin/v1/campaigns/gig/presale-codes/7/codes.csv",
                               headers=api.op())
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    await _codes(api)
    resp = await api.admin.get("/admin/v1/campaigns/gig/presale-codes/1/codes.csv",
                               headers=api.viewer())
    assert resp.status == 403  # the codes are secrets: operators only
    resp = await _claim(api, "ann", "x" * 65)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "invalid_request"


async def test_the_stepped_price_is_answered_and_confirmed_into_revenue(api: Api) -> None:
    spec = {**_spec(), "phases": [],
            "skus": [{**_spec()["skus"][0], "price_steps": [{"price": 4000, "tiers": ["fan"]}]}]}
    await api.admin.put("/admin/v1/campaigns/gig", json=spec, headers=api.op())
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ticket"},
                                 headers={"X-User-Id": "ann", "X-User-Tiers": "fan"})
    claim = await resp.json()
    assert resp.status == 201 and claim["price"] == 4000
    resp = await api.public.post(f"/v1/claims/{claim['claim_id']}/confirm",
                                 headers={"X-User-Id": "ann"})
    assert resp.status == 200 and (await resp.json())["price"] == 4000
    stats = await (await api.admin.get("/admin/v1/campaigns/gig/stats",
                                       headers=api.viewer())).json()
    assert stats["skus"][0]["revenue"] == 4000
    bad = {**spec, "skus": [{**spec["skus"][0], "price_steps": [{"price": 1}, {"price": 2}]}]}
    resp = await api.admin.put("/admin/v1/campaigns/gig2", json=bad, headers=api.op())
    assert resp.status == 400 and "skus[0].price_steps[0]" in (await resp.json())["error"][
        "message"]
