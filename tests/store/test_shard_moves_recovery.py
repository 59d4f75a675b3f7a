"""A move between shards caught mid-flight survives a total Redis loss.

A child process is killed (SIGKILL) between the two sides of a move, or a move's
receiver was persisted ahead of its donor; then Redis is emptied (FLUSHALL),
`recover` rebuilds every shard and its move outbox and log from the stored events,
and the sweeper finishes the move: no unit is lost or doubled, in Redis or the store.
"""

import asyncio
import json

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from stampede import Engine, Settings
from stampede.domain import shards
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import drain_stream, recover_all, recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.shards.helpers import kill_mid_move

TTL = 86_400_000
DONOR = keys.shard_id("hot", 1, 2)


@pytest.mark.parametrize("case", ["lent", "borrowed", "receiver_stored_first",
                                  "donor_lost_alone"])
async def test_move_mid_flight_is_delivered_once_after_flushall(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        clean_redis: str, store_settings: Settings, case: str) -> None:
    await sale.define_campaign("hot", campaign_spec(stock=20, shards=2))
    before = await sale.shards.available("hot", 2, "tee")
    await persister.drain()
    if case == "receiver_stored_first":  # a whole move, but only the borrow is stored
        assert await sale.shards.move("hot", 2, 1, 0, "tee", 5) == 5
        await drain_stream(raw_redis, store, keys.shard_id("hot", 0, 2))  # receiver only
    elif case == "donor_lost_alone":  # a whole move, nothing stored; the donor's keys lost
        assert await sale.shards.move("hot", 2, 1, 0, "tee", 5) == 5
    else:  # killed after the lend, or after the borrow (outbox entry still open)
        await kill_mid_move(clean_redis, store_settings, case)
        await persister.drain()
    if case == "donor_lost_alone":  # the receiver lives on, its borrow not yet stored
        lost = [k async for k in raw_redis.scan_iter(match=f"{keys.tag(DONOR)}*")]
        assert keys.moves_key(DONOR) in lost
        await raw_redis.delete(*lost)
        await recover_campaign(raw_redis, store, DONOR, TTL)
    else:
        await raw_redis.flushall()
        await recover_all(raw_redis, store, TTL)
    pending = await sale.shards.pending(DONOR)
    # "lent": the outbox entry rebuilt from the stored lend; "borrowed": both sides
    # stored, nothing left to do; "receiver_stored_first": lent again on the donor
    # before it reopened, its entry open until a sweep closes it.
    # "donor_lost_alone": the receiver's borrow stored first, then lent again.
    assert [(m.receiver, m.qty) for m in pending] == ([] if case == "borrowed" else [(0, 5)])
    report = await shards.audit(raw_redis, "hot", 2)
    assert report.problems == []
    assert report.skus["tee"]["lent"] == 5
    assert report.skus["tee"]["in_transit"] == (5 if case == "lent" else 0)
    # Two gateways' sweepers finish it at once: it arrives exactly once.
    await asyncio.gather(sale.sweep_all(), sale.sweep_all())
    assert await sale.shards.pending(DONOR) == []
    assert await sale.shards.available("hot", 2, "tee") == {0: before[0] + 5,
                                                             1: before[1] - 5}
    report = await shards.audit(raw_redis, "hot", 2)
    assert report.problems == []
    assert report.skus["tee"]["lent"] == report.skus["tee"]["borrowed"] == 5
    stats = await sale.stats("hot")
    assert stats is not None and stats.skus[0].available == stats.skus[0].released == 20
    await persister.drain()
    summary = await audit(store, "hot")
    assert summary["ok"], summary
    moves = summary["campaigns"]["hot"]["shard_moves"]
    assert moves["moves"] == 1 and moves["in_transit"] == 0 and moves["violations"] == []


async def test_audit_refuses_a_borrow_that_names_another_donor(
        sale: Engine, persister: Persister, store: Store) -> None:
    await sale.define_campaign("hot", campaign_spec(stock=30, shards=3))
    assert await sale.shards.move("hot", 3, 1, 0, "tee", 4) == 4
    await persister.drain()
    assert (await audit(store, "hot"))["ok"]
    ev = t.events.c
    async with store.begin() as conn:  # the borrow's event claims shard 2 lent it
        (seq, data), = (await conn.execute(select(ev.seq, ev.data).where(
            ev.campaign_id == "hot", ev.type == "stock_adjusted"))).all()
        fields = json.loads(data)
        assert fields["peer"] in (1, "1")
        await conn.execute(t.events.update().where(ev.campaign_id == "hot", ev.seq == seq)
                           .values(data=json.dumps({**fields, "peer": 2})))
    summary = await audit(store, "hot")
    (violation,) = summary["campaigns"]["hot"]["shard_moves"]["violations"]
    assert violation["lent"] == violation["borrowed"] == [4]
