"""The coupon routes over HTTP: claim, wallet, codes, gifts, redemption, rollback, stats."""

import msgspec
from prometheus_client import REGISTRY

from stampede.api.auth import mint_user_token
from tests.api.conftest import JWT_SECRET, Api
from tests.coupons.helpers import FIVE_OFF, drop_spec

SPEC = msgspec.json.encode(drop_spec(
    templates={"five": {**FIVE_OFF, "transferable": True}}, per_user=5, per_person=3))


def user(name: str, idh: str = "person-1") -> dict[str, str]:
    return {"X-User-Id": name, "X-Identity-Hash": idh}


async def test_coupon_lifecycle_over_http(api: Api) -> None:
    r = await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    assert r.status == 201, await r.text()
    r = await api.admin.put("/admin/v1/merchants/m1", json={"name": "Cafe"}, headers=api.op())
    assert r.status == 201
    merchant = {"Authorization": f"Bearer {(await r.json())['token']}"}
    assert (await api.admin.put("/admin/v1/merchants/m2", json={"name": "x"},
                                headers=api.viewer())).status == 403

    r = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                              headers={**user("alice"), "Idempotency-Key": "c1"})
    assert r.status == 201, await r.text()
    coupon = (await r.json())["coupons"][0]
    r2 = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                               headers={**user("alice"), "Idempotency-Key": "c1"})
    assert (await r2.json())["coupons"][0]["coupon_id"] == coupon["coupon_id"]
    r = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                              headers={"X-User-Id": "nobody"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"

    r = await api.public.get("/v1/me/coupons?status=active", headers=user("alice"))
    assert [c["coupon_id"] for c in (await r.json())["coupons"]] == [coupon["coupon_id"]]
    assert (await api.public.get("/v1/me/coupons?status=nope", headers=user("alice"))).status \
        == 400
    cpath = f"/v1/coupons/{coupon['coupon_id']}"
    assert (await api.public.get(cpath, headers=user("bob"))).status == 404
    r = await api.public.get(cpath + "/code", headers=user("alice"))
    till = (await r.json())["code"]
    assert till != coupon["code"]

    # gift to bob: alice's old code dies with the transfer
    r = await api.public.post(cpath + "/gift", headers={**user("alice"), "Idempotency-Key": "g"})
    assert r.status == 201
    token = (await r.json())["transfer_token"]
    r = await api.public.post("/v1/gifts/accept", json={"transfer_token": token},
                              headers=user("bob", "person-2"))
    assert r.status == 200, await r.text()
    bob_code = (await r.json())["code"]
    r = await api.public.post("/v1/gifts/accept", json={"transfer_token": token},
                              headers=user("carol", "person-3"))
    assert r.status == 409
    r = await api.public.get(cpath, headers=user("alice"))
    assert (await r.json())["status"] == "transferred" and (await r.json())["code"] is None

    order = {"code": coupon["code"], "order_id": "o-1", "order_amount": 3000}
    r = await api.public.post("/v1/redemptions", json=order, headers=merchant)
    assert r.status == 404  # the old code
    r = await api.public.post("/v1/redemptions", json={**order, "code": bob_code},
                              headers=merchant)
    assert r.status == 201, await r.text()
    redemption = await r.json()
    assert redemption["discount"] == 500
    assert (await api.public.post("/v1/redemptions", json={**order, "code": bob_code},
                                  headers=user("bob"))).status == 401
    rpath = f"/v1/redemptions/{redemption['redemption_id']}"
    assert (await api.public.get(rpath, headers=merchant)).status == 200
    r = await api.public.post(rpath + "/rollback", headers=merchant)
    assert r.status == 200 and (await r.json())["status"] == "rolled_back"
    r = await api.public.post(rpath + "/rollback", headers=merchant)
    assert r.status == 200

    r = await api.admin.get("/admin/v1/campaigns/d1/coupons/stats", headers=api.viewer())
    stats = await r.json()
    assert stats["totals"]["issued"] == 1 and stats["totals"]["rolled_back"] == 1
    assert stats["totals"]["transferred"] == 1 and stats["merchants"]["m1"]["redeemed"] == 1
    assert (await api.admin.get("/admin/v1/campaigns/zz/coupons/stats",
                                headers=api.viewer())).status == 404


async def test_identity_comes_from_the_token(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    import jwt
    for name in ("u1", "u2", "u3", "u4"):
        token = jwt.encode({"sub": name, "idh": "same-person"}, JWT_SECRET, algorithm="HS256")
        r = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                                  headers={"Authorization": f"Bearer {token}"})
        assert r.status == (201 if name != "u4" else 409), name
    plain = mint_user_token(JWT_SECRET, "u5")
    r = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                              headers={"Authorization": f"Bearer {plain}"})
    assert r.status == 403


async def test_idempotency_keys_of_merchant_calls(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    put = [await api.admin.put("/admin/v1/merchants/m1", json={"name": "Cafe"},
                               headers={**api.op(), "Idempotency-Key": "k"}) for _ in range(2)]
    tokens = [(await r.json())["token"] for r in put]
    assert tokens[0] == tokens[1]  # a retried PUT does not issue a second token
    merchant = {"Authorization": f"Bearer {tokens[0]}", "Idempotency-Key": "r1"}
    r = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                              headers=user("alice"))
    code = (await r.json())["coupons"][0]["code"]
    order = {"code": code, "order_id": "o-1", "order_amount": 3000}
    first = await api.public.post("/v1/redemptions", json=order, headers=merchant)
    again = await api.public.post("/v1/redemptions", json=order, headers=merchant)
    assert first.status == again.status == 201
    assert await first.json() == await again.json()
    other = await api.public.post("/v1/redemptions", json={**order, "order_id": "o-2"},
                                  headers=merchant)
    assert other.status == 422
    rid = (await first.json())["redemption_id"]
    assert (await api.public.post(f"/v1/redemptions/{rid}/rollback", headers=merchant)).status \
        == 422  # the redemption's key, reused on another request
    rb = {**merchant, "Idempotency-Key": "rb"}
    back = [await api.public.post(f"/v1/redemptions/{rid}/rollback", headers=rb)
            for _ in range(2)]
    assert [r.status for r in back] == [200, 200]
    assert await back[0].json() == await back[1].json()
    assert (await api.admin.delete("/admin/v1/merchants/m1", headers=api.op())).status == 204
    assert (await api.admin.delete("/admin/v1/merchants/m1", headers=api.op())).status == 404
    revoked = await api.public.post("/v1/redemptions", json={**order, "order_id": "o-3"},
                                    headers={"Authorization": merchant["Authorization"]})
    assert revoked.status == 401


async def test_coupon_answers_are_counted(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                          headers=user("zed", "z1"))
    await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                          headers={"X-User-Id": "nobody"})
    text = await (await api.admin.get("/metrics")).text()
    assert 'stampede_coupon_operations_total{answer="ok",op="claim"}' in text
    assert 'stampede_coupon_operations_total{answer="identity_required",op="claim"}' in text


async def test_budget_gauges(api: Api) -> None:
    from stampede.runtime.gauges import refresh_gauges
    await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                          headers=user("gauge", "g1"))
    await refresh_gauges(api.engine)
    text = await (await api.admin.get("/metrics")).text()
    assert 'stampede_coupon_value{campaign="d1",kind="issued"} 500.0' in text
    assert 'stampede_coupon_value{campaign="d1",kind="budget_left"} -1.0' in text


def _ops(op: str, answer: str) -> float:
    return REGISTRY.get_sample_value("stampede_coupon_operations_total",
                                     {"op": op, "answer": answer}) or 0.0


async def test_a_replayed_redemption_or_rollback_counts_once_as_ok(api: Api) -> None:
    r = await api.admin.put("/admin/v1/campaigns/d2", data=SPEC, headers=api.op())
    assert r.status == 201
    r = await api.admin.put("/admin/v1/merchants/m9", json={"name": "Cafe"}, headers=api.op())
    merchant = {"Authorization": f"Bearer {(await r.json())['token']}"}
    r = await api.public.post("/v1/campaigns/d2/coupons", json={"sku": "five"},
                              headers=user("alice"))
    code = (await r.json())["coupons"][0]["code"]
    before = {a: _ops("redeem", a) for a in ("ok", "replayed")}
    order = {"code": code, "order_id": "o-9", "order_amount": 3000}
    first = await api.public.post("/v1/redemptions", json=order, headers=merchant)
    again = await api.public.post("/v1/redemptions", json=order, headers=merchant)
    assert first.status == again.status == 201
    assert (await first.json()) == (await again.json())
    assert _ops("redeem", "ok") == before["ok"] + 1  # not twice
    assert _ops("redeem", "replayed") == before["replayed"] + 1
    rpath = f"/v1/redemptions/{(await first.json())['redemption_id']}/rollback"
    ok, replayed = _ops("rollback", "ok"), _ops("rollback", "replayed")
    for _ in range(2):
        assert (await api.public.post(rpath, headers=merchant)).status == 200
    assert (_ops("rollback", "ok"), _ops("rollback", "replayed")) == (ok + 1, replayed + 1)


async def test_coupon_refusals_name_what_refused(api: Api) -> None:
    r = await api.admin.put("/admin/v1/campaigns/d3", data=SPEC, headers=api.op())
    assert r.status == 201
    url = "/v1/campaigns/d3/coupons"
    r = await api.public.post(url, json={"sku": "nope"}, headers=user("alice"))
    assert (await r.json())["error"]["message"] == "campaign 'd3' has no SKU 'nope'"
    r = await api.public.post(url, json={"sku": "five", "qty": 11}, headers=user("alice"))
    assert r.status == 400
    assert "at most 10 units (max_per_claim); this one asks for 11" in await r.text()
    r = await api.public.post(url, json={"sku": "five", "qty": 6}, headers=user("alice"))
    assert (await r.json())["error"] == {
        "code": "limit_exceeded", "message": "user 'alice' may hold at most 5 units in "
                                             "campaign 'd3' (per-user limit); they hold 0"}
    r = await api.public.post("/v1/campaigns/d3/claims", json={"sku": "five"},
                              headers=user("alice"))
    assert r.status == 404 and "is a coupon drop" in await r.text()
