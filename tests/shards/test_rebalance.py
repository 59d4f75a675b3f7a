"""Proactive rebalancing: the sweeper tops a hot shard up before it runs dry, in
proportion to the shards' recent sale rates, and leaves an even or nearly sold-out
campaign alone; every top-up is an ordinary exactly-once move."""

import asyncio
import time
from collections import Counter

from stampede import Engine, Outcome, Settings
from stampede.domain import rebalance, shards
from stampede.domain.rebalance import plan, targets
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.domain.test_concurrency import _clone
from tests.shards.test_shards import FALSE_SOLD_OUT_BOUND_S


def test_targets_follow_the_rates_with_a_floor_for_quiet_shards() -> None:
    assert targets(400, [0, 0, 0, 0]) == [100, 100, 100, 100]
    hot = targets(400, [300, 0, 0, 0])
    assert sum(hot) == 400 and hot[0] > 300 and hot[1] == hot[2] == hot[3] > 0


def test_plan_tops_up_only_a_low_shard_from_the_others_spare_units() -> None:
    assert plan([100, 100, 100, 100], [10, 10, 10, 10]) == []  # even: nothing moves
    assert plan([100, 100, 100, 100], [0, 0, 0, 0]) == []
    assert plan([10, 100, 100, 100], [0, 0, 0, 0]) == []  # nothing sold lately
    assert plan([60, 100, 100, 100], [10, 10, 10, 10]) == []  # above the low-water mark
    moves = plan([10, 100, 100, 100], [300, 0, 0, 0])
    assert {r for _, r, _ in moves} == {0} and {d for d, _, _ in moves} == {1, 2, 3}
    goal = targets(310, [300, 0, 0, 0])  # 263.5, then 15.5 each: 84 whole units spare
    assert sum(q for *_, q in moves) == 3 * 84 and 10 + 3 * 84 > goal[0] * 0.5
    for donor in (1, 2, 3):  # a donor keeps at least its own target
        given = sum(q for d, _, q in moves if d == donor)
        assert 100 - given >= int(targets(310, [300, 0, 0, 0])[donor])
    assert plan([0, 1, 1, 1], [5, 5, 5, 5]) == []  # the last units: the dry path's
    assert plan([0, 0, 0, 0], [5, 0, 0, 0]) == []


async def test_the_sweeper_tops_a_hot_shard_up_before_it_runs_dry(engine: Engine) -> None:
    await engine.define_campaign("hot", campaign_spec(stock=400, per_user=None, shards=4))
    users = (u for i in range(10**6) if shards.shard_of_user(u := f"u{i}", 4) == 0)

    async def buy(units: int) -> None:
        for _ in range(units // 10):
            r = await engine.claim("hot", next(users), "tee", qty=10)
            assert r.outcome is Outcome.OK, r

    await engine.sweep_all()  # the first look: no rate known, nothing moves
    assert engine.rebalancer.moves == 0
    await buy(60)  # shard 0 sells 60 of its 100 while the others sell none
    await asyncio.sleep(0.05)
    await engine.sweep_all()
    available = await engine.shards.available("hot", 4, "tee")
    # Only the rates' ratio counts: shard 0 sold, the others did not.
    moved = sum(q for *_, q in rebalance.plan([40, 100, 100, 100], [1.0, 0, 0, 0]))
    assert moved > 200 and engine.rebalancer.units == moved
    assert available[0] == 40 + moved and sum(available.values()) == 340
    assert engine.shards.dry == 0
    await buy(available[0] // 10 * 10)  # shard 0's users take it all: no claim waits
    assert engine.shards.dry == 0
    report = await shards.audit(engine.redis, "hot", 4)
    assert report.problems == [] and report.skus["tee"]["in_transit"] == 0
    assert report.skus["tee"]["lent"] == report.skus["tee"]["borrowed"] == \
        engine.rebalancer.units
    stats = await engine.stats("hot")
    assert stats is not None and stats.skus[0].released == 400


async def test_two_gateways_rebalancing_during_a_skewed_rush_sell_exactly_the_stock(
        engine: Engine, settings: Settings) -> None:
    stock, n = 400, 4
    await engine.define_campaign("hot", campaign_spec(stock=stock, per_user=None, shards=n))
    other = await _clone(engine, settings)
    gateways = [engine, other]
    hot = (u for i in range(10**6) if shards.shard_of_user(u := f"h{i}", n) == 0)
    cold = (u for i in range(10**6) if shards.shard_of_user(u := f"c{i}", n) != 0)
    users = [next(hot) if i % 4 else next(cold) for i in range(1200)]  # 3/4 on shard 0
    stop = asyncio.Event()
    sweeps = [0, 0]

    async def sweeper(k: int) -> None:  # both gateways' sweepers, far faster than 250 ms
        while not stop.is_set():
            await gateways[k].sweep("hot")
            sweeps[k] += 1
            await asyncio.sleep(0.01)

    t0 = time.monotonic()

    async def one(i: int) -> tuple[Outcome, float, float]:
        # In waves, so the sale spans many sweeps: each wave after both gateways swept
        # since the one before (on a loaded machine a sweep can take longer than a wave).
        await asyncio.sleep(i // 100 * 0.02)
        while min(sweeps) < i // 100:
            await asyncio.sleep(0.005)
        sent = time.monotonic() - t0
        r = await gateways[i % 2].claim("hot", users[i], "tee", 1)
        return r.outcome, sent, time.monotonic() - t0

    sweepers = [asyncio.create_task(sweeper(k)) for k in range(2)]
    try:
        results = await asyncio.gather(*(one(i) for i in range(len(users))))
    finally:
        stop.set()
        await asyncio.gather(*sweepers)
        await other.close()
    outcomes = Counter(o for o, _, _ in results)
    assert outcomes == {Outcome.OK: stock, Outcome.SOLD_OUT: len(users) - stock}
    first_sold_out = min(done for o, _, done in results if o is Outcome.SOLD_OUT)
    last_ok_sent = max(sent for o, sent, _ in results if o is Outcome.OK)
    assert last_ok_sent - first_sold_out <= FALSE_SOLD_OUT_BOUND_S
    assert engine.rebalancer.moves + other.rebalancer.moves > 0  # units moved ahead
    report = await shards.audit(engine.redis, "hot", n)
    assert report.problems == [] and report.skus["tee"]["in_transit"] == 0
    assert (report.skus["tee"]["held"], report.skus["tee"]["available"]) == (stock, 0)


async def test_one_gateways_rebalancer_acts_at_a_time_and_another_takes_over(
        engine: Engine, settings: Settings) -> None:
    await engine.define_campaign("hot", campaign_spec(stock=400, per_user=None, shards=4))
    other = await _clone(engine, settings)
    first, second = engine.rebalancer, other.rebalancer
    first.lease_ms = second.lease_ms = 300  # a short lease: the test waits it out
    lease = keys.rebalance_lease_key("hot")
    users = (u for i in range(10**6) if shards.shard_of_user(u := f"u{i}", 4) == 0)

    async def buy(units: int) -> None:
        for _ in range(units // 10):
            assert (await engine.claim("hot", next(users), "tee", qty=10)).outcome is Outcome.OK

    try:
        await engine.sweep("hot")  # takes the lease (a first look: nothing moves)
        await other.sweep("hot")
        assert await engine.redis.get(lease) == first.token
        assert (first.held, second.held) == ({"hot"}, set())
        await buy(60)  # shard 0 sells 60 of its 100: a top-up is due
        await asyncio.sleep(0.05)
        await other.sweep("hot")  # not the holder: it leaves the top-up to the holder
        assert second.moves == 0
        assert (await engine.shards.available("hot", 4, "tee"))[0] == 40
        await engine.sweep("hot")
        assert first.moves > 0 and (await engine.shards.available("hot", 4, "tee"))[0] > 40
        # The holder dies (it stops keeping its lease): the other takes over once the
        # lease lapses, with no rate of its own yet, then tops up as the holder did.
        await other.sweep("hot")
        assert second.held == set()
        await asyncio.sleep(first.lease_ms / 1000 + 0.1)
        await other.sweep("hot")
        assert await engine.redis.get(lease) == second.token and second.held == {"hot"}
        assert second.moves == 0  # a first look after taking over: nothing moves
        await buy((await engine.shards.available("hot", 4, "tee"))[0] // 10 * 10 - 10)
        await asyncio.sleep(0.05)
        moves = first.moves
        await engine.sweep("hot")  # the old holder, back: fenced by the token, it waits
        assert first.moves == moves and first.held == set()
        await other.sweep("hot")
        assert second.moves > 0
        await other.rebalancer.give_up()  # a clean stop hands the lease back at once
        assert await engine.redis.get(lease) is None
        await engine.sweep("hot")
        assert first.held == {"hot"}
    finally:
        await other.close()
    report = await shards.audit(engine.redis, "hot", 4)
    assert report.problems == [] and report.skus["tee"]["in_transit"] == 0
