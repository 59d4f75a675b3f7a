"""Waitlists on a sharded campaign, against a real Valkey: FIFO per shard (a returned
unit goes to its shard's earliest waiter, not to an earlier waiter elsewhere), a
unit on a shard without waiters reaching another shard's waiter when a claim there
borrows, no join while a claim could still borrow, and no oversell."""

from stampede import Engine, Outcome
from stampede.domain import rebalance, shards
from tests.conftest import campaign_spec


def _users(n: int, count: int) -> list[list[str]]:
    by: list[list[str]] = [[] for _ in range(n)]
    i = 0
    while min(len(b) for b in by) < count:
        by[shards.shard_of_user(f"user{i}", n)].append(f"user{i}")
        i += 1
    return [b[:count] for b in by]


async def _status(engine: Engine, user: str) -> str:
    _, entries = await engine.waitlist("hot", user, "tee")
    return entries[0].status


async def test_fifo_per_shard_and_no_oversell(engine: Engine) -> None:
    spec = campaign_spec(stock=2, per_user=5, shards=2, waitlist={"max_length": 10})
    assert (await engine.define_campaign("hot", spec))[0] is Outcome.OK
    (a0, a1, a2), (b0, b1, _) = _users(2, 3)
    # Units remain (on some shard): a claim would borrow them, so no waitlist yet.
    assert (await engine.join_waitlist("hot", a1, "tee"))[0] is Outcome.NOT_SOLD_OUT
    held = await engine.claim("hot", a0, "tee", 2)  # both units, one borrowed
    assert held.outcome is Outcome.OK and held.claim is not None
    # b0 joins first, on shard 1; a1 then a2 on shard 0.
    for user in (b0, a1, a2):
        outcome, entry, created = await engine.join_waitlist("hot", user, "tee")
        assert outcome is Outcome.OK and created and entry is not None
        assert entry.campaign_id == "hot" and entry.position == (2 if user == a2 else 1)
    # a0's two units go back to shard 0: its waiters, in order, not b0 (FIFO per shard).
    assert (await engine.cancel(held.claim.claim_id, a0)).outcome is Outcome.OK
    assert [await _status(engine, u) for u in (a1, a2, b0)] == ["offered", "offered",
                                                                 "waiting"]
    # a1 declines: the unit returns to shard 0, which has no waiter left; a claim on
    # shard 1 borrows it, and shard 1's waiter b0 is offered it before that claim.
    assert (await engine.leave_waitlist("hot", a1, "tee"))[0] is Outcome.OK
    assert (await engine.claim("hot", b1, "tee")).outcome is Outcome.SOLD_OUT
    assert await _status(engine, b0) == "offered"
    # No oversell: two units, two offers held, every shard's books balance.
    report = await shards.audit(engine.redis, "hot", 2)
    assert report.problems == []
    tee = report.skus["tee"]
    assert (tee["held"], tee["sold"], tee["available"]) == (2, 0, 0)
    assert tee["released"] == 2
    stats = await engine.stats("hot")
    assert stats is not None and stats.waitlist == 0


async def test_a_shard_keeps_units_its_waiter_waits_for(engine: Engine) -> None:
    spec = campaign_spec(stock=3, per_user=5, shards=2, waitlist={"max_length": 10})
    assert (await engine.define_campaign("hot", spec))[0] is Outcome.OK
    (a0, a1), (b0, _) = _users(2, 2)
    first = await engine.claim("hot", a0, "tee", 1)
    rest = await engine.claim("hot", b0, "tee", 2)
    assert first.claim is not None and rest.outcome is Outcome.OK
    assert (await engine.join_waitlist("hot", a1, "tee", 2))[0] is Outcome.OK
    # One unit back on shard 0: its head wants two, so it waits there, unlent.
    assert (await engine.cancel(first.claim.claim_id, a0)).outcome is Outcome.OK
    assert await engine.shards.move("hot", 2, 0, 1, "tee", 1) == 0
    assert (await engine.shards.available("hot", 2, "tee"))[0] == 1
    assert await _status(engine, a1) == "waiting"


async def test_waiters_without_claims_get_units_from_another_shard_at_the_next_sweep(
        engine: Engine) -> None:
    spec = campaign_spec(stock=4, per_user=5, shards=2, waitlist={"max_length": 10})
    assert (await engine.define_campaign("hot", spec))[0] is Outcome.OK
    (a0, _), (b0, b1) = _users(2, 2)
    held = await engine.claim("hot", a0, "tee", 4)  # every unit, borrowed onto shard 0
    assert held.outcome is Outcome.OK and held.claim is not None
    assert (await engine.join_waitlist("hot", b0, "tee", 1))[0] is Outcome.OK
    assert (await engine.join_waitlist("hot", b1, "tee", 2))[0] is Outcome.OK
    await engine.sweep_all()  # the rebalancer's first look: sold out, nothing to move
    # Four units back on shard 0, which has no waiter: they stay there, and nobody
    # on shard 1 claims (its users wait), so no claim borrows them.
    assert (await engine.cancel(held.claim.claim_id, a0)).outcome is Outcome.OK
    assert (await engine.shards.available("hot", 2, "tee")) == {0: 4, 1: 0}
    # The next sweep counts shard 1's waiters (three units) as demand and tops it
    # up: its waiters are offered the units, head first; the fourth stays on shard 0.
    await engine.sweep_all()
    assert [await _status(engine, u) for u in (b0, b1)] == ["offered", "offered"]
    assert (await engine.shards.available("hot", 2, "tee")) == {0: 1, 1: 0}
    report = await shards.audit(engine.redis, "hot", 2)
    assert report.problems == []
    assert report.skus["tee"]["held"] == 3 and report.skus["tee"]["available"] == 1


def test_plan_for_waiters_takes_from_shards_without_waiters_richest_first() -> None:
    assert rebalance.plan_for_waiters([5, 0, 0], [0, 0, 0]) == []
    assert rebalance.plan_for_waiters([1, 0, 4], [0, 3, 0]) == [(2, 1, 3)]
    # Shards 1 and 2 both wait (they lend none): the largest lack, shard 2's, first.
    assert rebalance.plan_for_waiters([2, 1, 1], [0, 3, 5]) == [(0, 2, 2)]
    assert rebalance.plan_for_waiters([2, 1, 0], [0, 2, 1]) == [(0, 1, 1), (0, 2, 1)]
