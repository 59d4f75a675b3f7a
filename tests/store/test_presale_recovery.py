"""Presale phases survive an emptied Redis: recovery restores them as defined, then patched."""

import msgspec
from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.state.keys import campaign_keys
from tests.conftest import campaign_spec, iso
from tests.store.helpers import assert_store_matches_redis

TTL = 86_400_000


async def test_recovery_restores_the_phases_as_patched(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    phases = [{"name": "vip", "opens_at": iso(-30), "tiers": ["vip"]},
              {"name": "public", "opens_at": iso(600)}]
    await sale.define_campaign("c1", campaign_spec(stock=5, per_user=None, phases=phases))
    assert (await sale.claim("c1", "ann", "tee", tiers=["vip"])).outcome is Outcome.OK
    patch = msgspec.convert({"phases": [{**phases[0], "tiers": ["vip", "member"]},
                                        phases[1]]}, CampaignPatch)
    assert await sale.patch_campaign("c1", patch, "ops") is Outcome.OK
    meta = campaign_keys("c1").meta
    before = await raw_redis.hget(meta, "ph")
    assert before and "member" in before
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c1", TTL)
    assert await raw_redis.hget(meta, "ph") == before
    assert (await sale.claim("c1", "bob", "tee", tiers=["member"])).outcome is Outcome.OK
    assert (await sale.claim("c1", "cat", "tee")).outcome is Outcome.NOT_OPEN
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    summary = await audit(store)
    assert summary["ok"], summary
