"""Sharded campaigns over HTTP: the spec's 400s name the field; claims, lookups and
stats of a sharded campaign look like any campaign's."""

from typing import Any

from stampede.api.auth import mint_user_token
from tests.api.conftest import JWT_SECRET, Api
from tests.conftest import iso


def _spec(**extra: Any) -> dict[str, Any]:
    return {"name": "hot sale", "opens_at": iso(-60), "closes_at": iso(3600),
            "limits": {"per_user": 2},
            "skus": [{"sku": "tee", "price": 500, "waves": [{"at": iso(-30), "qty": 3}]}],
            **extra}


async def _error(resp: Any) -> tuple[int, str, str]:
    body = await resp.json()
    return resp.status, body["error"]["code"], body["error"]["message"]


async def test_spec_refusals_name_the_field(api: Api) -> None:
    for extra, field in (({"shards": 65}, "shards"), ({"shards": 0}, "shards"),
                         ({"shards": 2, "phases": [{"name": "fans", "opens_at": iso(-60),
                                                    "tiers": ["fan"]}]}, "phases")):
        resp = await api.admin.put("/admin/v1/campaigns/hot", json=_spec(**extra),
                                   headers=api.op())
        status, code, message = await _error(resp)
        assert (status, code) == (400, "invalid_request"), (extra, message)
        assert field in message, message
    assert (await api.admin.put("/admin/v1/campaigns/hot", json=_spec(shards=2),
                                headers=api.op())).status == 201
    resp = await api.admin.put("/admin/v1/campaigns/hot", json=_spec(shards=4),
                               headers=api.op())
    status, code, message = await _error(resp)
    assert (status, code) == (400, "invalid_request") and message.startswith("shards:")
    resp = await api.admin.patch("/admin/v1/campaigns/hot", json={"throttle": {"enabled": True}},
                                 headers=api.op())
    assert resp.status == 200  # each shard gets its share (tests/shards/test_shard_guard.py)


async def test_claims_and_stats_of_a_sharded_campaign(api: Api) -> None:
    assert (await api.admin.put("/admin/v1/campaigns/hot", json=_spec(shards=3),
                                headers=api.op())).status == 201
    claims = []
    for user in ("ann", "bob", "cat", "dan"):
        headers = {"Authorization": f"Bearer {mint_user_token(JWT_SECRET, user)}"}
        resp = await api.public.post("/v1/campaigns/hot/claims", json={"sku": "tee"},
                                     headers=headers)
        claims.append((resp.status, await resp.json(), headers))
    assert [s for s, _, _ in claims] == [201, 201, 201, 409]
    assert claims[3][1]["error"]["code"] == "sold_out"
    _, body, headers = claims[0]
    resp = await api.public.get(f"/v1/claims/{body['claim_id']}", headers=headers)
    assert resp.status == 200 and (await resp.json())["campaign_id"] == "hot"
    resp = await api.public.post(f"/v1/claims/{body['claim_id']}/confirm", headers=headers)
    assert resp.status == 200
    stats = await (await api.admin.get("/admin/v1/campaigns/hot/stats",
                                       headers=api.op())).json()
    (sku,) = stats["skus"]
    assert (sku["available"], sku["held"], sku["sold"], sku["released"]) == (0, 2, 1, 3)
    listed = await (await api.admin.get("/admin/v1/campaigns", headers=api.op())).json()
    assert [c["id"] for c in listed["campaigns"]] == ["hot"]
