"""Real-name one per person survives an emptied Redis (the identities come back from
the held claims' events) and audit checks the limit, on SQLite and PostgreSQL."""

from redis.asyncio import Redis
from sqlalchemy import func

from stampede import Engine, Outcome
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from tests.domain.test_per_person import per_person_spec
from tests.store.test_recovery_keys import _dump

TTL = 86_400_000


async def test_recovery_rebuilds_each_persons_units(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("p1", per_person_spec(2, stock=20))
    a = await sale.claim("p1", "ann", "tee", 2, identity="h-ann")
    b = await sale.claim("p1", "bob", "tee", 1, identity="h-bob")
    c = await sale.claim("p1", "bob2", "tee", 1, identity="h-bob")
    assert a.claim and b.claim and c.claim
    assert (await sale.confirm(a.claim.claim_id, "ann")).outcome is Outcome.OK
    assert (await sale.cancel(b.claim.claim_id, "bob")).outcome is Outcome.OK
    await persister.drain()
    before = await _dump(raw_redis, "p1")
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "p1", TTL)
    after = await _dump(raw_redis, "p1")
    users = next(k for k in before if k.endswith(":users"))
    assert after[users] == before[users]
    assert (await sale.claim("p1", "ann3", "tee", identity="h-ann")).outcome is \
        Outcome.LIMIT_EXCEEDED
    assert (await sale.claim("p1", "bob3", "tee", identity="h-bob")).outcome is Outcome.OK
    # The recovered marker still gives units back on release.
    assert (await sale.cancel(c.claim.claim_id, "bob2")).outcome is Outcome.OK
    assert (await sale.claim("p1", "bob4", "tee", identity="h-bob")).outcome is Outcome.OK
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary


async def test_audit_finds_a_person_past_the_limit(
        sale: Engine, persister: Persister, store: Store) -> None:
    await sale.define_campaign("p2", per_person_spec(2))
    for user in ("ann", "ann2"):
        assert (await sale.claim("p2", user, "tee", identity="h-ann")).outcome is Outcome.OK
    await persister.drain()
    assert (await audit(store))["ok"]
    # The store says the limit was 1: the second account's hold went past it.
    async with store.begin() as conn:
        await conn.execute(t.events.update().where(
            t.events.c.campaign_id == "p2", t.events.c.type == "campaign_defined")
            .values(data=func.replace(t.events.c.data, '\\"per_person\\":2',
                                      '\\"per_person\\":1')))
    summary = await audit(store)
    assert not summary["ok"]
    samples = summary["campaigns"]["p2"]["violation_samples"]
    assert [(v["kind"], v["identity"]) for v in samples] == [("over_person_limit", "h-ann")]
