"""Price steps patched live over HTTP: 200 with the campaign's stats, 400 naming the
field for steps out of order (nothing changed), 404 for an unknown SKU."""

from typing import Any

from tests.api.conftest import Api
from tests.conftest import iso


def _spec() -> dict[str, Any]:
    return {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "skus": [{"sku": "ticket", "price": 5000,
                      "price_steps": [{"price": 4000, "first_units": 10}],
                      "waves": [{"at": iso(-60), "qty": 10}]}]}


async def test_price_steps_patched_live(api: Api) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    assert resp.status == 201, await resp.text()
    bad = {"price_steps": {"ticket": [{"price": 1, "until": iso(600)},
                                      {"price": 2, "until": iso(300)}]}}
    resp = await api.admin.patch("/admin/v1/campaigns/gig", json=bad, headers=api.op())
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "invalid_request"
    assert "price_steps.ticket[1].until" in body["error"]["message"]
    resp = await api.admin.patch("/admin/v1/campaigns/gig", headers=api.op(),
                                 json={"price_steps": {"hat": []}})
    body = await resp.json()
    assert resp.status == 404 and "hat" in body["error"]["message"], body
    good = {"price_steps": {"ticket": [{"price": 4500, "first_units": 5}]}}
    resp = await api.admin.patch("/admin/v1/campaigns/gig", json=good, headers=api.op())
    assert resp.status == 200, await resp.text()
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ticket"},
                                 headers={"X-User-Id": "ann"})
    assert (await resp.json())["price"] == 4500
