"""Presale allocations survive an emptied Redis (reserved units and each hold's take
come back from the events) and audit checks them, on SQLite and PostgreSQL."""

from redis.asyncio import Redis
from sqlalchemy import func

from stampede import Engine, Outcome
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from tests.conftest import iso
from tests.domain.test_allocations import allocated_spec
from tests.store.test_recovery_keys import _dump

TTL = 86_400_000
ALLOCS = [{"name": "app", "qty": 4, "channels": ["app"]},
          {"name": "web", "qty": 3, "channels": ["web"]},
          {"name": "vip", "qty": 2, "tiers": ["vip"]}]


async def test_recovery_rebuilds_the_allocations(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("al1", allocated_spec(ALLOCS, stock=12))  # 3 shared
    a = await sale.claim("al1", "u1", "tkt", 3, channel="app")
    b = await sale.claim("al1", "u2", "tkt", 2, channel="web")
    c = await sale.claim("al1", "u3", "tkt", 1, tiers=("vip",))
    assert a.claim and b.claim and c.claim
    assert (await sale.confirm(a.claim.claim_id, "u1")).outcome is Outcome.OK
    assert (await sale.cancel(c.claim.claim_id, "u3")).outcome is Outcome.OK
    assert (await sale.return_allocation("al1", "tkt", "web", "ops"))[0] is Outcome.OK
    await persister.drain()
    before = await _dump(raw_redis, "al1")
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "al1", TTL)
    after = await _dump(raw_redis, "al1")
    for key in before:
        if key.endswith((":users", ":stock")):
            assert after[key] == before[key], key
    meta = next(k for k in before if k.endswith(":meta"))
    # (al_next, the sweeper's next look, is rebuilt from the returns_at still pending:
    # none here, '0', where the define left '' for "scan")
    alloc = {f: v for f, v in before[meta].items() if f.startswith("al") and f != "al_next"}
    assert alloc and {f: after[meta][f] for f in alloc} == alloc
    # The recovered web hold gives its units to the shared pool (web was returned).
    assert (await sale.cancel(b.claim.claim_id, "u2")).outcome is Outcome.OK
    assert (await sale.claim("al1", "u4", "tkt", 6)).outcome is Outcome.OK  # 3 + 1 + 2
    assert (await sale.claim("al1", "u5", "tkt", 1)).outcome is Outcome.SOLD_OUT
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary


async def test_audit_finds_an_allocation_overdrawn(
        sale: Engine, persister: Persister, store: Store) -> None:
    await sale.define_campaign("al2", allocated_spec(ALLOCS, stock=12))
    assert (await sale.claim("al2", "u1", "tkt", 4, channel="app")).outcome is Outcome.OK
    await persister.drain()
    assert (await audit(store))["ok"]
    # The store says app reserved 3 units: the hold took 4 from it.
    async with store.begin() as conn:
        await conn.execute(t.events.update().where(
            t.events.c.campaign_id == "al2", t.events.c.type == "campaign_defined")
            .values(data=func.replace(t.events.c.data, '\\"qty\\":4', '\\"qty\\":3')))
    summary = await audit(store)
    assert not summary["ok"]
    kinds = {v["kind"] for v in summary["campaigns"]["al2"]["violation_samples"]}
    assert kinds == {"over_allocation"}, summary


async def test_a_return_at_its_time_is_stored_with_no_claim(
        sale: Engine, persister: Persister, store: Store) -> None:
    """The sweeper makes the return at returns_at (no claim comes): the store has it."""
    allocs = [{"name": "app", "qty": 4, "channels": ["app"], "returns_at": iso(100)}]
    await sale.define_campaign("al3", allocated_spec(allocs, stock=12))
    await sale.set_clock_offset("al3", 101_000)
    await sale.sweep("al3")
    await persister.drain()
    async with store.begin() as conn:
        rows = (await conn.execute(t.events.select().where(
            t.events.c.campaign_id == "al3",
            t.events.c.type == "allocation_returned"))).all()
    assert len(rows) == 1 and '"schedule"' in rows[0].data, rows
    assert (await audit(store))["ok"]


async def test_recovery_keeps_a_pending_return_on_schedule(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    """After a recovery the sweeper still returns an allocation at its returns_at, with no
    claim and no PATCH to wake it: the meta's al_next is rebuilt as the earliest
    returns_at still pending."""
    allocs = [{"name": "app", "qty": 4, "channels": ["app"], "returns_at": iso(100)},
              {"name": "web", "qty": 3, "channels": ["web"], "returns_at": iso(200)},
              {"name": "vip", "qty": 2, "tiers": ["vip"]}]
    await sale.define_campaign("al4", allocated_spec(allocs, stock=12))
    await sale.sweep("al4")  # the sweeper has learnt app's returns_at
    meta = next(iter([k for k in (await _dump(raw_redis, "al4")) if k.endswith(":meta")]))
    pending = await raw_redis.hget(meta, "al_next")
    assert pending and int(pending) > 0
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "al4", TTL)
    assert await raw_redis.hget(meta, "al_next") == pending
    await sale.set_clock_offset("al4", 101_000)
    await sale.sweep("al4")
    await persister.drain()
    async with store.begin() as conn:
        rows = (await conn.execute(t.events.select().where(
            t.events.c.campaign_id == "al4",
            t.events.c.type == "allocation_returned"))).all()
    assert len(rows) == 1 and '"app"' in rows[0].data and '"schedule"' in rows[0].data, rows
