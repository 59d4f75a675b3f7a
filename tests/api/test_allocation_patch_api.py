"""Allocations patched live over HTTP: 200 with the stats showing them; a bad list is
400 naming the field in the JSON error shape (nothing changed); an unknown SKU 404."""

from typing import Any

from tests.api.conftest import Api
from tests.conftest import iso


def _spec() -> dict[str, Any]:
    return {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 10}],
                      "allocations": [{"name": "app", "qty": 4, "channels": ["app"]}]}]}


async def test_allocations_patched_live(api: Api) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    assert resp.status == 201, await resp.text()
    for bad, status, message in (
            ({"ticket": [{"name": "app", "qty": 11, "channels": ["app"]}]}, 400,
             "allocations.ticket: the allocations would reserve 11 units"),
            ({"ticket": [{"name": "app", "qty": 1}]}, 400,
             "allocations.ticket[0]: an allocation names channels or tiers"),
            ({"ticket": [{"name": "app", "qty": 0, "channels": ["app"]}]}, 400, "qty"),
            ({"hat": []}, 404, "hat")):
        resp = await api.admin.patch("/admin/v1/campaigns/gig", headers=api.op(),
                                     json={"allocations": bad})
        body = await resp.json()
        assert resp.status == status and set(body) == {"error"}, body
        assert message in body["error"]["message"], body
    good = {"allocations": {"ticket": [{"name": "web", "qty": 6, "channels": ["web"]}]}}
    resp = await api.admin.patch("/admin/v1/campaigns/gig", json=good, headers=api.op())
    stats = await resp.json()
    assert resp.status == 200, stats
    assert [(a["name"], a["reserved"], a["returned"])
            for a in stats["skus"][0]["allocations"]] == [("web", 6, False)]
