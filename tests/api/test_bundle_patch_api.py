"""Bundles patched live over HTTP: 200 with the campaign's stats, the new bundle
claimable at once and listed by GET /v1/campaigns/{id}; a bad definition (or a bad
name) is 400 naming the field in the JSON error shape, and nothing changes."""

from typing import Any

from tests.api.conftest import Api
from tests.conftest import iso


def _spec() -> dict[str, Any]:
    return {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "limits": {"max_per_claim": 2},
            "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 10}]},
                     {"sku": "tee", "price": 2000, "waves": [{"at": iso(-60), "qty": 10}]}],
            "bundles": {"pair": {"lines": [{"sku": "ticket", "qty": 2}]}}}


async def test_bundles_patched_live(api: Api) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(), headers=api.op())
    assert resp.status == 201, await resp.text()
    for bad, field in (
            ({"bundles": {"fan": {"lines": [{"sku": "ticket"}, {"sku": "hat"}]}}},
             "bundles.fan.lines[1].sku: the campaign has no SKU 'hat'"),
            ({"bundles": {"fan": {"lines": [{"sku": "tee", "qty": 3}]}}},
             "bundles.fan.lines[0].qty: 3 is over the campaign's max_per_claim of 2"),
            ({"bundles": {"fan": {"lines": []}}}, "$.bundles[...].lines"),
            ({"bundles": {"no good": None}}, "bundles"),
            ({"bundles": {"fan": {"lines": [{"sku": "tee"}]}}, "hold_ttl_s": 0},
             "hold_ttl_s")):
        resp = await api.admin.patch("/admin/v1/campaigns/gig", json=bad, headers=api.op())
        body = await resp.json()
        assert resp.status == 400 and set(body) == {"error"}, body
        assert body["error"]["code"] == "invalid_request"
        assert field in body["error"]["message"], body
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"bundle": "fan"},
                                 headers={"X-User-Id": "ann"})
    assert resp.status == 404, await resp.text()  # nothing of the refused PATCHes made it
    status = await (await api.public.get("/v1/campaigns/gig")).json()
    assert status["bundles"] == {"pair": {"lines": [{"sku": "ticket", "qty": 2}]}}
    good = {"bundles": {"fan": {"lines": [{"sku": "ticket"}, {"sku": "tee"}]}, "pair": None}}
    resp = await api.admin.patch("/admin/v1/campaigns/gig", json=good, headers=api.op())
    assert resp.status == 200, await resp.text()
    status = await (await api.public.get("/v1/campaigns/gig")).json()
    assert status["bundles"] == {"fan": {"lines": [{"sku": "ticket", "qty": 1},
                                                   {"sku": "tee", "qty": 1}]}}
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"bundle": "fan"},
                                 headers={"X-User-Id": "ann"})
    body = await resp.json()
    assert resp.status == 201 and body["price"] == 7000, body
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"bundle": "pair"},
                                 headers={"X-User-Id": "bob"})
    assert resp.status == 404, await resp.text()
