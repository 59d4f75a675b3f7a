"""The persister on a real SQLite file and a real PostgreSQL: events in, projections right."""

import asyncio
import dataclasses
import random

from redis.asyncio import Redis
from sqlalchemy import func, select

from stampede import Engine, Outcome, Settings
from stampede.domain.models import CampaignPatch, LimitsPatch
from stampede.durable.audit import audit
from stampede.durable.persister import GROUP, Persister, entries_of, lag
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state.keys import events_key
from tests.conftest import campaign_spec
from tests.store.helpers import assert_store_matches_redis, store_rows


async def _sale(engine: Engine, cid: str = "c1", users: int = 8) -> list[str]:
    """A little of everything: holds, confirms, cancels, expiries, stock and limit changes."""
    await engine.define_campaign(cid, campaign_spec(stock=20, per_user=3, skus=("tee", "cap")))
    held = []
    for i in range(users):
        r = await engine.claim(cid, f"u{i}", "tee" if i % 2 else "cap", idempotency_key=f"k{i}")
        assert r.outcome is Outcome.OK and r.claim
        held.append(r.claim.claim_id)
    await engine.confirm(held[0], "u0")
    await engine.cancel(held[1], "u1")
    await engine.adjust_stock(cid, "tee", 5, "ops")
    await engine.patch_campaign(cid, CampaignPatch(limits=LimitsPatch(per_user=4)), "ops")
    await engine.set_clock_offset(cid, 601_000)  # every remaining hold lapses
    await engine.sweep(cid)
    await engine.set_clock_offset(cid, 0)
    r = await engine.claim(cid, "late", "tee")
    assert r.outcome is Outcome.OK
    return held


async def test_events_and_projections_reach_the_store(sale: Engine, persister: Persister,
                                                      store: Store) -> None:
    held = await _sale(sale)
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    (camp,) = await store_rows(store, t.campaigns, "c1")
    assert camp.per_user == 4 and camp.epoch == 1
    history = [r for r in await store_rows(store, t.claim_history, "c1")
               if r.claim_id == held[0]]
    assert [h.status for h in sorted(history, key=lambda h: h.seq)] == ["held", "confirmed"]
    claims = {r.claim_id: r for r in await store_rows(store, t.claims, "c1")}
    assert claims[held[1]].status == "cancelled" and claims[held[2]].status == "expired"
    assert claims[held[2]].idem_key and claims[held[2]].fingerprint == "cap:1"
    summary = await audit(store)
    assert summary["ok"], summary
    tee = summary["campaigns"]["c1"]["skus"]["tee"]
    assert tee["released"] == 25 and tee["sold"] == 0 and tee["cancelled"] == 1
    assert tee["expired"] == 3 and tee["held"] == 1


async def test_redefinition_resets_the_stock_projection(sale: Engine, persister: Persister,
                                                        store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=10))
    await persister.drain()
    await sale.define_campaign("c1", campaign_spec(stock=4, skus=("hat",)))
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    assert [r.sku for r in await store_rows(store, t.skus, "c1")] == ["hat"]
    assert (await audit(store))["ok"]


async def test_duplicate_and_out_of_order_delivery_is_harmless(
        sale: Engine, raw_redis: "Redis[str]", store: Store) -> None:
    await _sale(sale)
    key = events_key("c1")
    events = entries_of(key, await raw_redis.xrange(key))
    shuffled = events * 2
    random.Random(7).shuffle(shuffled)
    for i in range(0, len(shuffled), 5):  # small batches, any order, each event twice
        async with store.begin() as conn:
            await store_events(conn, store, shuffled[i:i + 5])
    await assert_store_matches_redis(sale, store, "c1")
    async with store.engine.connect() as conn:
        n = (await conn.execute(select(func.count()).select_from(t.events))).scalar_one()
    assert n == len(events)
    assert (await audit(store))["ok"]


async def test_a_poison_entry_is_dead_lettered_not_looped(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5))
    await persister.refresh_streams()
    await raw_redis.xadd(events_key("c1"), {"type": "claim_held", "seq": "not-a-number"})
    await sale.claim("c1", "u1", "tee")
    rounds = 0
    while await persister.step() or persister._retry:
        rounds += 1
        assert rounds < 20, "the poison entry is looping"
    (dead,) = await store_rows(store, t.dead_letters, "c1")
    assert "not-a-number" in dead.fields and dead.deliveries == 3
    assert (await raw_redis.xpending(events_key("c1"), GROUP))["pending"] == 0
    # The good events around it are all stored (the bad one had no seq to leave a gap).
    await assert_store_matches_redis(sale, store, "c1")


async def test_entries_of_a_dead_consumer_are_taken_over(
        sale: Engine, raw_redis: "Redis[str]", store: Store, store_settings: Settings) -> None:
    await _sale(sale)
    dead = Persister(raw_redis, store, store_settings, consumer="dead")
    await dead.refresh_streams()
    taken = await dead._read(0)  # delivered to "dead", which then dies before committing
    assert taken
    alive = Persister(raw_redis, store, store_settings, consumer="alive")
    await alive.refresh_streams()
    assert await alive.step() == 0  # nothing new: everything is pending under "dead"
    await asyncio.sleep(0.3)  # longer than persist_claim_idle_ms
    assert await alive.take_over() == len(taken)
    assert (await raw_redis.xpending(events_key("c1"), GROUP))["pending"] == 0
    await assert_store_matches_redis(sale, store, "c1")


async def test_trim_keeps_every_unacknowledged_entry(
        sale: Engine, raw_redis: "Redis[str]", store: Store, store_settings: Settings) -> None:
    key = events_key("c1")
    await sale.define_campaign("c1", campaign_spec(stock=1000, per_user=None))
    worker = Persister(raw_redis, store, store_settings, consumer="w")
    await worker.drain()
    stuck = Persister(raw_redis, store, store_settings, consumer="stuck")
    await stuck.refresh_streams()
    for i in range(100):
        await sale.claim("c1", f"a{i}", "tee")
    assert await worker.step() == 100  # acknowledged
    for i in range(200):
        await sale.claim("c1", f"b{i}", "tee")
    pending = await stuck._read(0)  # delivered, never acknowledged
    for i in range(50):
        await sale.claim("c1", f"c{i}", "tee")
    assert await worker.step() == 50
    await worker.trim()
    ids = [e for e, _ in await raw_redis.xrange(key)]
    assert ids == [p[1] for p in pending] + ids[200:], "trim removed an unacknowledged entry"
    assert len(ids) == 250  # everything below the oldest pending entry is gone
    info = await lag(raw_redis, "c1")
    assert info.pending == len(pending) and info.oldest_age_s >= 0


async def test_persisters_running_together_have_no_double_effects(
        sale: Engine, raw_redis: "Redis[str]", store: Store, store_settings: Settings) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=400, per_user=None))
    stop = asyncio.Event()
    workers = [Persister(raw_redis, store, store_settings, consumer=f"p{i}") for i in range(3)]
    runs = [asyncio.create_task(w.run(stop)) for w in workers]

    async def buyer(n: int) -> None:
        for i in range(40):
            r = await sale.claim("c1", f"b{n}-{i}", "tee")
            if r.claim and i % 3 == 0:
                await sale.confirm(r.claim.claim_id, f"b{n}-{i}")

    await asyncio.gather(*(buyer(n) for n in range(12)))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*runs)
    await workers[0].drain()
    assert sum(w.persisted for w in workers) >= 480
    await assert_store_matches_redis(sale, store, "c1")
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["c1"]["skus"]["tee"]["held"] + \
        summary["campaigns"]["c1"]["skus"]["tee"]["sold"] == 400


async def test_every_waitlist_event_keeps_its_own_sequence_number(
        sale: Engine, persister: Persister, store: Store) -> None:
    # An event's fields must never shadow its header (seq, type, ts, epoch): a
    # shadowed seq files the event under another number and stalls the projections.
    await sale.define_campaign("c1", campaign_spec(stock=1, per_user=2,
                                                   waitlist={"max_length": 10}))
    first = await sale.claim("c1", "ann", "tee")
    assert first.claim
    for user in ("bob", "cat"):
        outcome, _, _ = await sale.join_waitlist("c1", user, "tee")
        assert outcome is Outcome.OK
    await sale.cancel(first.claim.claim_id, "ann")  # the unit goes to bob as an offer
    offer = [e for e in (await sale.waitlist("c1", "bob"))[1] if e.offer]
    assert offer and offer[0].offer
    await sale.confirm(offer[0].offer.claim_id, "bob")
    await persister.drain()
    stats = await sale.stats("c1")
    assert stats is not None
    types = [r.type for r in sorted(await store_rows(store, t.events, "c1"), key=lambda r: r.seq)]
    assert len(types) == stats.events and types.count("waitlist_joined") == 2
    (camp,) = await store_rows(store, t.campaigns, "c1")
    assert camp.applied_seq == camp.max_seq == stats.events  # nothing waits behind a gap
    await assert_store_matches_redis(sale, store, "c1")
    summary = await audit(store)
    assert summary["ok"], summary


async def test_caught_up_a_trickle_is_stored_in_few_transactions(
        sale: Engine, raw_redis: "Redis[str]", store: Store, store_settings: Settings) -> None:
    """After a short batch the persister lets the next one gather (the linger), so claims
    arriving one by one share a transaction instead of paying one each."""
    await sale.define_campaign("c1", campaign_spec(stock=100, per_user=None))
    settings = dataclasses.replace(store_settings, persist_linger_ms=1500)
    persister = Persister(raw_redis, store, settings, consumer="lingering")
    await persister.drain()  # the definition's events
    stop = asyncio.Event()
    running = asyncio.create_task(persister.run(stop))
    try:
        first, stored = persister.batches, persister.persisted
        assert (await sale.claim("c1", "u0", "tee")).outcome is Outcome.OK
        while persister.batches == first:  # the first claim alone: nothing to wait for
            await asyncio.sleep(0.01)
        for i in range(1, 11):  # one at a time, within the linger
            assert (await sale.claim("c1", f"u{i}", "tee")).outcome is Outcome.OK
        while persister.persisted < stored + 11:
            await asyncio.sleep(0.02)
        assert persister.batches - first == 2  # the ten waited and went together
    finally:
        stop.set()
        await running
    await assert_store_matches_redis(sale, store, "c1")
