"""Grants in the durable store: `stampede audit` checks one pack per check-in across the
sale and the drop, and `stampede recover` rebuilds an outbox a crash left pending
(SQLite and PostgreSQL, each against a real Valkey)."""

from redis.asyncio import Redis

from stampede import Engine
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.state import keys
from tests.aftersale.helpers import bought, sale_spec
from tests.aftersale.test_grants import _wallet, pack_drop

TTL = 86_400_000


async def test_one_pack_per_check_in_is_audited_and_recovered(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("fans", pack_drop())
    await sale.define_campaign("gig", sale_spec(  # type: ignore[arg-type]
        tickets={"venue": "arena"}, on_checkin={"drop": "fans", "sku": "welcome"}))
    claim = await bought(sale, "gig", "ann", 2)
    for n in (1, 2):  # checked in, the process dying before each grant
        await sale.scripts.run("checkin", [*keys.campaign_keys("gig"), keys.tickets_key("gig"),
                                           keys.checkin_counts_key("gig"),
                                           keys.outbox_key("gig")],
                               [f"{claim}-{n}", claim, n, 0, "arena", "north", "n1"])
    await sale.grants.drain_outbox("gig", [f"{claim}-1"])  # the first grant made
    await persister.drain()
    summary = await audit(store)
    assert not summary["ok"]
    gig = summary["campaigns"]["gig"]
    assert gig["grants"] == {"checkins": 2, "granted": 1}
    assert gig["violation_samples"][-1] == {"kind": "grant_missing", "drop": "fans",
                                            "tickets": [f"{claim}-2"]}

    await raw_redis.flushall()  # the outbox is lost with Redis: recovery rebuilds it
    await recover_campaign(raw_redis, store, "fans", TTL)
    await recover_campaign(raw_redis, store, "gig", TTL)
    assert await raw_redis.hgetall(keys.outbox_key("gig")) == {
        f"{claim}-2": "ann|fans|welcome"}
    await sale.sweep("gig")
    assert len(await _wallet(sale, "fans", "ann")) == 4
    await sale.sweep("gig")
    assert len(await _wallet(sale, "fans", "ann")) == 4
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["gig"]["grants"] == {"checkins": 2, "granted": 2}


async def test_one_pack_per_confirm_is_audited_and_recovered(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("fans", pack_drop())
    await sale.define_campaign("shop", sale_spec(  # type: ignore[arg-type]
        on_confirm={"drop": "fans", "sku": "welcome"}))
    first = await bought(sale, "shop", "ann", 1)  # granted at once
    await raw_redis.hset(keys.campaign_keys("fans").meta, "fenced", "1")
    second = await bought(sale, "shop", "bob", 2)  # the grant step lost
    await raw_redis.hset(keys.campaign_keys("fans").meta, "fenced", "0")
    assert await raw_redis.hkeys(keys.outbox_key("shop")) == [f"confirm:{second}"]
    await persister.drain()
    summary = await audit(store)
    shop = summary["campaigns"]["shop"]
    assert shop["confirm_grants"] == {"confirmed": 2, "granted": 1}
    assert shop["violation_samples"][-1] == {"kind": "grant_missing", "drop": "fans",
                                             "claims": [second]}

    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "fans", TTL)
    await recover_campaign(raw_redis, store, "shop", TTL)
    assert await raw_redis.hgetall(keys.outbox_key("shop")) == {
        f"confirm:{second}": "bob|fans|welcome"}
    await sale.sweep("shop")
    await sale.sweep("shop")
    assert len(await _wallet(sale, "fans", "bob")) == 2
    assert len(await _wallet(sale, "fans", "ann")) == 2
    assert first != second
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["shop"]["confirm_grants"] == {"confirmed": 2, "granted": 2}
