"""While Redis has lost a campaign the store knows, its routes answer 503, then heal."""

import functools

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.api.app import make_public_app
from stampede.api.auth import Authenticator
from stampede.api.healing import IN_STORE
from stampede.durable.persister import Persister
from stampede.durable.recovery import heal, in_store
from stampede.durable.store import Store
from stampede.state import keys
from tests.conftest import campaign_spec


async def test_a_lost_campaign_answers_503_until_healed_and_an_unknown_one_404(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5, per_user=2))
    held = await sale.claim("c1", "ann", "tee")
    assert held.outcome is Outcome.OK and held.claim
    await persister.drain()
    app = make_public_app(sale, Authenticator("s" * 32, True, ()), {"draining": False})
    app[IN_STORE] = functools.partial(in_store, store)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        ann = {"X-User-Id": "ann", "Idempotency-Key": "pay-1"}
        await raw_redis.delete(*keys.campaign_keys("c1"))  # the campaign's keys are lost
        claim = await client.post("/v1/campaigns/c1/claims", json={"sku": "tee"},
                                  headers={"X-User-Id": "bob"})
        confirm = await client.post(f"/v1/claims/{held.claim.claim_id}/confirm", headers=ann)
        for r in (claim, confirm):
            assert r.status == 503 and r.headers["Retry-After"]
            assert (await r.json())["error"]["code"] == "unavailable"
        unknown = await client.post("/v1/campaigns/nope/claims", json={"sku": "tee"},
                                    headers={"X-User-Id": "bob"})
        assert unknown.status == 404
        assert [r.campaign_id for r in await heal(raw_redis, store, 86_400_000)] == ["c1"]
        # The retry with the same key runs now (no 404 was remembered) and confirms.
        again = await client.post(f"/v1/claims/{held.claim.claim_id}/confirm", headers=ann)
        assert again.status == 200 and (await again.json())["status"] == "confirmed"
    finally:
        await client.close()
