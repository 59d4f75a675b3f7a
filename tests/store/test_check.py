"""`audit` refuses to vouch for nothing; `check` measures the store against Redis."""

import asyncio

from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.durable.audit import audit
from stampede.durable.lagcheck import compare
from stampede.durable.persister import Persister
from stampede.durable.store import Store
from stampede.state import keys
from tests.conftest import campaign_spec


async def test_audit_of_an_empty_store_or_an_unknown_campaign_is_an_error(
        sale: Engine, persister: Persister, store: Store) -> None:
    empty = await audit(store)
    assert not empty["ok"] and "no campaign" in empty["error"]
    await sale.define_campaign("c1", campaign_spec(stock=5))
    await persister.drain()
    assert (await audit(store))["ok"]
    unknown = await audit(store, "nope")
    assert not unknown["ok"] and "'nope'" in unknown["error"]


async def test_check_reports_the_store_behind_then_caught_up(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=50, per_user=5))
    await persister.drain()
    for i in range(5):
        assert (await sale.claim("c1", f"u{i}", "tee")).outcome is Outcome.OK
    await asyncio.sleep(0.3)  # the persister is not running: these wait
    behind = await compare(raw_redis, store, max_lag_s=0.2)
    c1 = behind["campaigns"]["c1"]
    assert not behind["ok"] and c1["problems"] == ["store_behind"]
    assert c1["behind_events"] == 5 and c1["unpersisted"] == 5
    assert c1["oldest_unpersisted_s"] >= 0.3
    assert (await compare(raw_redis, store, max_lag_s=60))["ok"]  # within a looser bound
    await persister.drain()
    level = await compare(raw_redis, store, max_lag_s=0.2)
    assert level["ok"] and level["campaigns"]["c1"]["behind_events"] == 0
    await raw_redis.delete(*keys.campaign_keys("c1"))
    lost = await compare(raw_redis, store, max_lag_s=60)
    assert lost["campaigns"]["c1"]["problems"] == ["missing_from_redis"]
