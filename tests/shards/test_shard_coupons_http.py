"""A sharded coupon drop over HTTP: what it refuses (400 naming the field), and the ids
that name a shard (coupon, redemption, gift token) accepted by every route."""

import msgspec

from stampede.domain import shards
from tests.api.conftest import Api
from tests.coupons.helpers import FIVE_OFF, drop_spec

N = 3


def _user(shard: int) -> dict[str, str]:
    name = next(u for u in (f"u{i}" for i in range(1000)) if shards.shard_of_user(u, N) == shard)
    return {"X-User-Id": name}


async def test_sharded_drop_over_http(api: Api) -> None:
    bad = msgspec.json.encode(drop_spec(budget=1000, campaign={"shards": N}))
    r = await api.admin.put("/admin/v1/campaigns/d1", data=bad, headers=api.op())
    body = await r.json()
    assert r.status == 400 and body["error"]["code"] == "invalid_request"
    assert body["error"]["message"].startswith("coupons.budget: not supported with shards > 1")
    spec = drop_spec(stock=6, per_user=2, templates={"five": FIVE_OFF | {"transferable": True}},
                     campaign={"shards": N})
    r = await api.admin.put("/admin/v1/campaigns/d1", data=msgspec.json.encode(spec),
                            headers=api.op())
    assert r.status == 201, await r.text()
    r = await api.admin.put("/admin/v1/merchants/m1", json={"name": "Cafe"}, headers=api.op())
    till = {"Authorization": f"Bearer {(await r.json())['token']}"}

    giver, taker = _user(2), _user(1)
    r = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                              headers={**giver, "Idempotency-Key": "c1"})
    assert r.status == 201, await r.text()
    claim = await r.json()
    coupon = claim["coupons"][0]
    assert claim["campaign_id"] == coupon["campaign_id"] == "d1"
    assert ":s" in coupon["coupon_id"]  # the id names the giver's shard
    cpath = f"/v1/coupons/{coupon['coupon_id']}"
    assert (await api.public.get(cpath, headers=giver)).status == 200
    assert (await api.public.get(cpath + "/code", headers=giver)).status == 200
    r = await api.public.post(cpath + "/gift", headers={**giver, "Idempotency-Key": "g"})
    assert r.status == 201, await r.text()
    token = (await r.json())["transfer_token"]
    r = await api.public.post("/v1/gifts/accept", json={"transfer_token": token}, headers=taker)
    assert r.status == 200, await r.text()
    code = (await r.json())["code"]
    r = await api.public.get("/v1/me/coupons?status=active", headers=taker)
    assert [c["coupon_id"] for c in (await r.json())["coupons"]] == [coupon["coupon_id"]]

    order = {"code": code, "order_id": "o-1", "order_amount": 3000}
    r = await api.public.post("/v1/redemptions", json=order, headers=till)
    assert r.status == 201, await r.text()
    rpath = f"/v1/redemptions/{(await r.json())['redemption_id']}"
    assert (await api.public.get(rpath, headers=till)).status == 200
    r = await api.public.post(rpath + "/rollback", headers=till)
    assert r.status == 200 and (await r.json())["status"] == "rolled_back"

    r = await api.admin.get("/admin/v1/campaigns/d1/coupons/stats", headers=api.viewer())
    totals = (await r.json())["totals"]
    assert (totals["issued"], totals["transferred"], totals["rolled_back"]) == (1, 1, 1)
    r = await api.admin.patch("/admin/v1/campaigns/d1/coupons", json={"per_day": 10},
                              headers=api.op())
    assert r.status == 400 and (await r.json())["error"]["message"].startswith("per_day:")
