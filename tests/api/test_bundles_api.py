"""Bundles over HTTP: a claim of the spec's `bundle` or of `lines`, answered as one
claim with its lines; confirm and cancel by the bundle's id act on every line; bad input
(a bundle naming an unknown SKU, a SKU twice, qty out of range, too many lines, sku and
lines together) is a 400 naming the field, and nothing changes."""

from typing import Any

import pytest

from tests.api.conftest import Api
from tests.conftest import iso

USER = {"X-User-Id": "fan1"}
CLAIMS = "/v1/campaigns/gig/claims"


def _spec(**bundles: Any) -> dict[str, Any]:
    return {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "limits": {"max_per_claim": 4},
            "skus": [{"sku": "ticket", "price": 5000, "waves": [{"at": iso(-60), "qty": 5}]},
                     {"sku": "tee", "price": 2500, "waves": [{"at": iso(-60), "qty": 1}]}],
            "bundles": bundles or {"ticket-tee": {"lines": [{"sku": "ticket"},
                                                            {"sku": "tee"}]}}}


async def _define(api: Api, **bundles: Any) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(**bundles),
                               headers=api.op())
    assert resp.status == 201, await resp.text()


async def test_a_bundle_claim_and_its_settlement(api: Api) -> None:
    await _define(api)
    resp = await api.public.post(CLAIMS, json={"bundle": "ticket-tee"},
                                 headers={**USER, "Idempotency-Key": "b1"})
    body = await resp.json()
    assert resp.status == 201, body
    assert body["bundle"] == "ticket-tee" and body["price"] == 7500 and body["sku"] == ""
    assert [(x["sku"], x["qty"], x["price"]) for x in body["lines"]] == \
        [("ticket", 1, 5000), ("tee", 1, 2500)]
    again = await api.public.post(CLAIMS, json={"bundle": "ticket-tee"},
                                  headers={**USER, "Idempotency-Key": "b1"})
    assert (await again.json())["claim_id"] == body["claim_id"]
    # the tee is gone with the bundle: a claim of lines needing it is refused whole
    resp = await api.public.post(CLAIMS, json={"lines": [{"sku": "ticket", "qty": 2},
                                                         {"sku": "tee"}]},
                                 headers={"X-User-Id": "fan2"})
    refused = await resp.json()
    assert resp.status == 409 and refused["error"]["code"] == "sold_out", refused
    assert "'tee'" in refused["error"]["message"]
    status = await (await api.public.get("/v1/campaigns/gig")).json()
    assert {s["sku"]: s["available"] for s in status["skus"]} == {"ticket": 4, "tee": 0}
    resp = await api.public.post(f"/v1/claims/{body['claim_id']}/confirm", headers=USER)
    done = await resp.json()
    assert resp.status == 200 and done["status"] == "confirmed", done
    assert {x["status"] for x in done["lines"]} == {"confirmed"}
    line = await api.public.get(f"/v1/claims/{done['lines'][0]['claim_id']}", headers=USER)
    assert (await line.json())["sku"] == "ticket"


@pytest.mark.parametrize("body,field", [
    ({"lines": [{"sku": "ticket"}, {"sku": "ticket", "qty": 2}]}, "lines[1].sku"),
    ({"lines": [{"sku": "ticket", "qty": 0}]}, "$.lines[0].qty"),
    ({"lines": [{"sku": f"s{i}"} for i in range(9)]}, "$.lines"),
    ({"lines": []}, "$.lines"),
    ({"sku": "ticket", "lines": [{"sku": "tee"}]}, "`sku`, `lines` and `bundle`"),
    ({"bundle": "ticket-tee", "qty": 2}, "qty"),
    ({}, "`sku`, `lines` and `bundle`"),
])
async def test_bad_claims_of_lines_are_400s_naming_the_field(api: Api, body: Any,
                                                             field: str) -> None:
    await _define(api)
    resp = await api.public.post(CLAIMS, json=body, headers=USER)
    error = (await resp.json())["error"]
    assert resp.status == 400 and error["code"] == "invalid_request", error
    assert field in error["message"], error
    status = await (await api.public.get("/v1/campaigns/gig")).json()
    assert {s["sku"]: s["available"] for s in status["skus"]} == {"ticket": 5, "tee": 1}


async def test_over_max_per_claim_names_the_line_and_limit(api: Api) -> None:
    await _define(api)
    resp = await api.public.post(CLAIMS, json={"lines": [{"sku": "tee"},
                                                         {"sku": "ticket", "qty": 5}]},
                                 headers=USER)
    error = (await resp.json())["error"]
    assert resp.status == 400 and "at most 4 units" in error["message"], error
    resp = await api.public.post(CLAIMS, json={"bundle": "nope"}, headers=USER)
    error = (await resp.json())["error"]
    assert resp.status == 404 and "no bundle 'nope'" in error["message"], error


@pytest.mark.parametrize("bundles,field", [
    ({"x": {"lines": [{"sku": "shirt"}]}}, "bundles.x.lines[0].sku"),
    ({"x": {"lines": [{"sku": "tee"}, {"sku": "tee"}]}}, "bundles.x.lines[1].sku"),
    ({"x": {"lines": [{"sku": "tee", "qty": 9}]}}, "bundles.x.lines[0].qty"),
    ({"x": {"lines": [{"sku": "tee"}] * 9}}, "lines"),
    ({"bad name!": {"lines": [{"sku": "tee"}]}}, "bundles"),
])
async def test_a_bad_bundle_spec_is_a_400_naming_the_field(api: Api, bundles: Any,
                                                           field: str) -> None:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=_spec(**bundles),
                               headers=api.op())
    error = (await resp.json())["error"]
    assert resp.status == 400, error
    assert field in error["message"], error
    assert (await api.public.get("/v1/campaigns/gig")).status == 404


async def test_a_sharded_campaign_answers_a_bundle_claim_409(api: Api) -> None:
    spec = {**_spec(), "bundles": {}, "shards": 2}
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=spec, headers=api.op())
    assert resp.status == 201, await resp.text()
    resp = await api.public.post(CLAIMS, json={"lines": [{"sku": "ticket"}, {"sku": "tee"}]},
                                 headers=USER)
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "conflict", body
    assert "'gig' is split across shards" in body["error"]["message"]
    resp = await api.admin.put("/admin/v1/campaigns/gig", json={**_spec(), "shards": 2},
                               headers=api.op())
    body = await resp.json()
    assert resp.status == 400 and body["error"]["message"].startswith("bundles: "), body
