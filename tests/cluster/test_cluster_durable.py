"""The durable side in cluster mode: persister, recovery, healing, reconcile and audit.

Tests of tests/store run here again on the session's Valkey Cluster (SQLite
store): this module's fixtures give them a cluster client as `raw_redis`, an
engine in cluster mode as `sale`, and a persister over both. A last test spreads
campaigns over every primary and checks the persister reads every node's streams.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from stampede import Engine, Settings
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.reconcile import reconcile
from stampede.durable.recovery import heal
from stampede.durable.store import Store
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.store.helpers import assert_store_matches_redis
from tests.store.test_persister import (
    test_entries_of_a_dead_consumer_are_taken_over,
    test_events_and_projections_reach_the_store,
    test_persisters_running_together_have_no_double_effects,
    test_trim_keeps_every_unacknowledged_entry,
)
from tests.store.test_recovery import (
    test_a_fenced_campaign_answers_unavailable,
    test_an_older_redis_is_detected_and_healed,
    test_reconcile_compares_at_the_same_event,
    test_recover_an_emptied_redis_and_continue_the_sale,
    test_recover_drains_what_the_store_has_not_seen,
    test_recovery_rebuilds_the_waitlists_in_their_order,
)
from tests.store.test_recovery_keys import test_recovery_rebuilds_every_key_the_scripts_read

__all__ = [
    "test_a_fenced_campaign_answers_unavailable",
    "test_an_older_redis_is_detected_and_healed",
    "test_entries_of_a_dead_consumer_are_taken_over",
    "test_events_and_projections_reach_the_store",
    "test_persisters_running_together_have_no_double_effects",
    "test_reconcile_compares_at_the_same_event",
    "test_recover_an_emptied_redis_and_continue_the_sale",
    "test_recover_drains_what_the_store_has_not_seen",
    "test_recovery_rebuilds_every_key_the_scripts_read",
    "test_recovery_rebuilds_the_waitlists_in_their_order",
    "test_trim_keeps_every_unacknowledged_entry",
]

TTL = 86_400_000


@pytest.fixture
def store_settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(data_dir=tmp_path, store_url=store_url, persist_batch=200,
                    persist_claim_idle_ms=200, persist_max_attempts=3, redis_cluster=True)


@pytest.fixture
async def sale(clean_cluster: str, store_settings: Settings) -> AsyncIterator[Engine]:
    eng = Engine.from_url(clean_cluster, store_settings)
    await eng.start()
    yield eng
    await eng.close()


@pytest.fixture
def persister(raw_redis: "Redis[str]", store: Store, store_settings: Settings) -> Persister:
    return Persister(raw_redis, store, store_settings, consumer="test")


async def _spread(client: "Redis[str]", count: int) -> list[str]:
    """Campaign ids whose slots fall on every primary, `count` per primary."""
    assert isinstance(client, RedisCluster)
    await client.initialize()  # the slot map
    found: dict[str, list[str]] = {}
    n = 0
    while len(found) < 3 or min(len(v) for v in found.values()) < count:
        cid = f"s{n}"
        n += 1
        node = client.get_node_from_key(keys.campaign_keys(cid).meta).name
        if len(found.setdefault(node, [])) < count:
            found[node].append(cid)
    return [cid for cids in found.values() for cid in cids]


async def test_campaigns_on_every_node_are_persisted_healed_and_audited(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    cids = await _spread(raw_redis, 2)
    for cid in cids:
        await sale.define_campaign(cid, campaign_spec(stock=20, per_user=2))
        for u in range(8):
            r = await sale.claim(cid, f"u{u}", "tee", 2)
            if r.claim and u % 2:
                await sale.confirm(r.claim.claim_id, f"u{u}")
    await persister.drain()
    for cid in cids:
        await assert_store_matches_redis(sale, store, cid)
    # One campaign on each node loses its keys: healing rebuilds each from the store.
    lost = cids[::2]
    for cid in lost:
        await raw_redis.delete(*keys.campaign_keys(cid))
    healed = await heal(raw_redis, store, TTL)
    assert sorted(h.campaign_id for h in healed) == sorted(lost)
    for cid in cids:
        assert (await sale.claim(cid, "late", "tee")).claim is not None
    await persister.drain()
    for cid in cids:
        await assert_store_matches_redis(sale, store, cid)
    assert await reconcile(raw_redis, store) == []
    summary = await audit(store)
    assert summary["ok"], summary
