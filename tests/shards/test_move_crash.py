"""A crash (kill -9) between the two sides of a move loses or doubles no unit.

A child process runs the real move (Shards.move) against the test's Valkey and is
killed with SIGKILL while it stands between the lend and the borrow, or between the
borrow and closing the outbox entry. The sweeper then finishes the move, from two
gateways at once: the units arrive exactly once.
"""

import asyncio

import pytest

from stampede import Engine, Settings
from stampede.domain import shards
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.domain.test_concurrency import _clone
from tests.shards.helpers import kill_mid_move


@pytest.mark.parametrize("stop_at", ["lent", "borrowed"])
async def test_kill_9_mid_move_loses_and_doubles_nothing(engine: Engine, settings: Settings,
                                                         clean_redis: str, stop_at: str) -> None:
    await engine.define_campaign("hot", campaign_spec(stock=20, shards=2))
    before = await engine.shards.available("hot", 2, "tee")
    await kill_mid_move(clean_redis, settings, stop_at)
    (pending,) = await engine.shards.pending(keys.shard_id("hot", 1, 2))
    assert pending.qty == 5 and pending.receiver == 0
    during = await engine.shards.available("hot", 2, "tee")
    report = await shards.audit(engine.redis, "hot", 2)
    assert report.problems == []
    assert report.skus["tee"]["in_transit"] == (5 if stop_at == "lent" else 0)
    if stop_at == "lent":  # the units are in neither shard, only in the outbox
        assert during == {0: before[0], 1: before[1] - 5}
    else:
        assert during == {0: before[0] + 5, 1: before[1] - 5}
    # The sweepers of two gateways finish it at once: it arrives exactly once.
    other = await _clone(engine, settings)
    try:
        await asyncio.gather(engine.sweep_all(), other.sweep_all(), engine.sweep_all())
    finally:
        await other.close()
    assert await engine.shards.available("hot", 2, "tee") == {0: before[0] + 5,
                                                               1: before[1] - 5}
    assert await engine.shards.pending(keys.shard_id("hot", 1, 2)) == []
    report = await shards.audit(engine.redis, "hot", 2)
    assert report.problems == []
    assert report.skus["tee"]["lent"] == report.skus["tee"]["borrowed"] == 5
    stats = await engine.stats("hot")
    assert stats is not None and stats.skus[0].available == stats.skus[0].released == 20
