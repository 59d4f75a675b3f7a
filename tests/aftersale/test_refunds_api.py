"""The refund routes over HTTP: answers, refusals in the error shape, and BOLA."""

from typing import Any

from tests.api.conftest import Api

SPEC: dict[str, Any] = {
    "name": "Gig", "opens_at": "2026-01-01T00:00:00Z", "closes_at": "2099-01-01T00:00:00Z",
    "limits": {"per_user": 4}, "refunds": {"units_to": "restock", "buyer_window_s": 3600},
    "skus": [{"sku": "ga", "price": 5000, "waves": [{"at": "2026-01-01T00:00:00Z", "qty": 5}]}],
}


def _user(name: str) -> dict[str, str]:
    return {"X-User-Id": name}


async def _bought(api: Api, user: str, qty: int, spec: dict[str, Any] | None = None) -> str:
    resp = await api.admin.put("/admin/v1/campaigns/gig", json=spec or SPEC, headers=api.op())
    assert resp.status in (200, 201), await resp.text()
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ga", "qty": qty},
                                 headers=_user(user))
    claim_id: str = (await resp.json())["claim_id"]
    resp = await api.public.post(f"/v1/claims/{claim_id}/confirm", headers=_user(user))
    assert resp.status == 200
    return claim_id


async def _error(resp: Any) -> tuple[int, str, str]:
    body = await resp.json()
    return resp.status, body["error"]["code"], body["error"]["message"]


async def test_buyer_and_operator_refunds(api: Api) -> None:
    claim = await _bought(api, "ann", 3)
    resp = await api.public.post(f"/v1/claims/{claim}/refund", json={"qty": 1, "reason": "ill"},
                                 headers={**_user("ann"), "Idempotency-Key": "r1"})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"claim_id": claim, "status": "confirmed", "refunded": 1,
                                 "left": 2, "amount": 5000}
    again = await api.public.post(f"/v1/claims/{claim}/refund", json={"qty": 1, "reason": "ill"},
                                  headers={**_user("ann"), "Idempotency-Key": "r1"})
    assert again.status == 200 and (await again.json())["left"] == 2
    other = await api.public.post(f"/v1/claims/{claim}/refund", json={"qty": 2},
                                  headers={**_user("ann"), "Idempotency-Key": "r1"})
    assert (await _error(other))[:2] == (422, "idempotency_mismatch")
    resp = await api.admin.post(f"/admin/v1/claims/{claim}/refund", json={}, headers=api.op())
    assert resp.status == 200
    assert (await resp.json())["status"] == "refunded"
    stats = await (await api.admin.get("/admin/v1/campaigns/gig/stats",
                                       headers=api.viewer())).json()
    assert stats["refunds"] == [{"sku": "ga", "units": 3, "amount": 15000}]
    assert stats["skus"][0]["available"] == 5 and stats["skus"][0]["sold"] == 0
    mine = await (await api.public.get(f"/v1/claims/{claim}", headers=_user("ann"))).json()
    assert mine["status"] == "refunded"


async def test_nobody_refunds_another_users_claim(api: Api) -> None:
    claim = await _bought(api, "ann", 1)
    resp = await api.public.post(f"/v1/claims/{claim}/refund", json={},
                                 headers=_user("mallory"))
    status, code, message = await _error(resp)
    assert (status, code) == (404, "not_found") and claim in message
    viewer = await api.admin.post(f"/admin/v1/claims/{claim}/refund", json={},
                                  headers=api.viewer())
    assert viewer.status == 403
    anonymous = await api.public.post(f"/v1/claims/{claim}/refund", json={})
    assert anonymous.status == 401
    assert (await api.admin.post(f"/admin/v1/claims/{claim}/refund", json={})).status == 401


async def test_refusals_name_the_thing_and_the_limit(api: Api) -> None:
    claim = await _bought(api, "ann", 2)
    resp = await api.admin.post(f"/admin/v1/claims/{claim}/refund", json={"qty": 3},
                                headers=api.op())
    status, code, message = await _error(resp)
    assert (status, code) == (409, "conflict")
    assert message == f"claim '{claim}' has 2 units left to refund; 3 cannot be refunded"
    held = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ga"},
                                 headers=_user("bob"))
    held_id = (await held.json())["claim_id"]
    resp = await api.admin.post(f"/admin/v1/claims/{held_id}/refund", json={},
                                headers=api.op())
    assert await _error(resp) == (409, "conflict", f"claim '{held_id}' is held: only a "
                                  "confirmed claim can be refunded")
    for bad in ({"qty": 0}, {"qty": "x"}, {"reason": "r" * 201}, {"units": 1}, []):
        resp = await api.admin.post(f"/admin/v1/claims/{claim}/refund", json=bad,
                                    headers=api.op())
        assert (await _error(resp))[:2] == (400, "invalid_request"), bad
    resp = await api.admin.post("/admin/v1/claims/nope/refund", json={}, headers=api.op())
    assert resp.status == 400
    resp = await api.admin.post("/admin/v1/claims/gig.0123456789abcdef0123/refund", json={},
                                headers=api.op())
    assert (await _error(resp))[:2] == (404, "not_found")


async def test_buyer_refunds_follow_the_campaigns_window(api: Api) -> None:
    claim = await _bought(api, "ann", 1, {**SPEC, "refunds": {"units_to": "retire"}})
    resp = await api.public.post(f"/v1/claims/{claim}/refund", json={}, headers=_user("ann"))
    status, code, message = await _error(resp)
    assert (status, code) == (403, "forbidden") and "'gig'" in message
    await api.engine.set_clock_offset("gig", 10_000)
    spec = {**SPEC, "refunds": {"buyer_window_s": 5}}
    resp = await api.admin.put("/admin/v1/campaigns/other", json=spec, headers=api.op())
    claim = (await (await api.public.post("/v1/campaigns/other/claims", json={"sku": "ga"},
                                          headers=_user("ann"))).json())["claim_id"]
    await api.public.post(f"/v1/claims/{claim}/confirm", headers=_user("ann"))
    await api.engine.set_clock_offset("other", 6_000)
    resp = await api.public.post(f"/v1/claims/{claim}/refund", json={}, headers=_user("ann"))
    assert await _error(resp) == (409, "conflict", f"claim '{claim}' can no longer be refunded "
                                  "by its buyer: the campaign allows it for 5 s after purchase")
