"""Real-name one per person survives an emptied Redis (the identities come back from
the held claims' events) and audit checks the limit, on SQLite and PostgreSQL."""

from redis.asyncio import Redis
from sqlalchemy import func

from stampede import Engine, Outcome
from stampede.domain.refunds import RefundRequest
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys
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


async def test_refunds_and_transfers_give_a_persons_units_back(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    """The rule: a refund gives the buyer's person their units back, a transfer moves
    them to the recipient's person (who must carry an identity and stay within the
    limit); recovery rebuilds the same counts and the audit agrees."""
    await sale.define_campaign("p3", per_person_spec(2, refunds={"units_to": "restock"},
                                                     transfers={}))
    bought = await sale.claim("p3", "ann", "tee", 2, identity="h-ann")
    assert bought.claim is not None
    claim = bought.claim.claim_id
    await sale.confirm(claim, "ann")
    assert (await sale.claim("p3", "ann2", "tee", identity="h-ann")).outcome is \
        Outcome.LIMIT_EXCEEDED
    assert (await sale.refunds.refund(claim, RefundRequest(qty=1), "ops")).outcome is \
        Outcome.OK
    again = await sale.claim("p3", "ann2", "tee", identity="h-ann")  # the unit came back
    assert again.outcome is Outcome.OK
    token = "p3." + "ab" * 16
    assert (await sale.transfers.offer(claim, "ann", token)).outcome is Outcome.OK
    nobody = await sale.transfers.accept(token, "bob")  # no identity: refused
    assert (nobody.outcome, nobody.reason) == (Outcome.LIMIT_EXCEEDED, "person_required")
    full = await sale.claim("p3", "cat", "tee", 2, identity="h-cat")
    assert full.outcome is Outcome.OK
    over = await sale.transfers.accept(token, "cat2", "h-cat")  # h-cat holds 2 already
    assert (over.outcome, over.reason, over.params) == (Outcome.LIMIT_EXCEEDED, "per_person",
                                                        {"limit": 2, "held": 2})
    taken = await sale.transfers.accept(token, "bob", "h-bob")
    assert taken.outcome is Outcome.OK
    users = keys.campaign_keys("p3").users
    assert await raw_redis.hmget(users, "~p|h-ann", "~p|h-bob") == ["1", "1"]
    assert (await sale.claim("p3", "ann3", "tee", identity="h-ann")).outcome is Outcome.OK
    await persister.drain()
    before = await _dump(raw_redis, "p3")
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "p3", TTL)
    after = await _dump(raw_redis, "p3")
    users_key = next(k for k in before if k.endswith(":users"))
    persons = {k: v for k, v in after[users_key].items() if k.startswith("~p|")}
    assert persons == {k: v for k, v in before[users_key].items() if k.startswith("~p|")}
    assert persons["~p|h-ann"] == "2" and persons["~p|h-bob"] == "1"
    summary = await audit(store)
    assert summary["ok"], summary
