"""Rebuilding Redis from the store: nothing sold twice, answers and holds come back."""

import msgspec
from redis.asyncio import Redis

from stampede import Engine, Outcome, Settings
from stampede.domain.models import CampaignPatch
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.reconcile import reconcile, reconcile_campaign
from stampede.durable.recovery import fence, heal, recover_campaign, redis_behind
from stampede.durable.store import Store
from stampede.state.keys import campaign_keys, lists_key
from tests.conftest import campaign_spec
from tests.store.helpers import assert_store_matches_redis

TTL = 86_400_000


async def test_recover_an_emptied_redis_and_continue_the_sale(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=6, per_user=2))
    first = await sale.claim("c1", "ann", "tee", idempotency_key="k1")
    assert first.claim
    await sale.claim("c1", "ann", "tee")
    bob = await sale.claim("c1", "bob", "tee")
    assert bob.claim
    await sale.confirm(bob.claim.claim_id, "bob")
    before = await sale.stats("c1")
    await persister.drain()
    await raw_redis.flushall()
    assert (await sale.claim("c1", "cat", "tee")).outcome is Outcome.NOT_FOUND
    rebuilt = await recover_campaign(raw_redis, store, "c1", TTL)
    assert rebuilt.epoch == 2 and rebuilt.live_holds == 2 and rebuilt.idempotency_answers == 1
    after = await sale.stats("c1")
    assert after is not None and before is not None
    assert after.skus == before.skus and after.events == before.events and not after.fenced
    retry = await sale.claim("c1", "ann", "tee", idempotency_key="k1")
    assert retry.claim and retry.claim.claim_id == first.claim.claim_id  # same first answer
    assert (await sale.claim("c1", "ann", "tee")).outcome is Outcome.LIMIT_EXCEEDED
    for user in ("cat", "dan", "eve", "fay"):
        await sale.claim("c1", user, "tee")
    stats = await sale.stats("c1")
    assert stats and stats.skus[0].available == 0 and stats.skus[0].held + \
        stats.skus[0].sold == 6
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["c1"]["epoch"] == 2


async def test_a_fenced_campaign_answers_unavailable(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5))
    held = await sale.claim("c1", "ann", "tee")
    assert held.claim
    await persister.drain()
    await fence(raw_redis, store, "c1")
    assert (await sale.claim("c1", "bob", "tee")).outcome is Outcome.FENCED
    assert (await sale.confirm(held.claim.claim_id, "ann")).outcome is Outcome.FENCED
    await raw_redis.flushall()
    await fence(raw_redis, store, "c1")  # a missing campaign is fenced too, not "not found"
    assert (await sale.claim("c1", "bob", "tee")).outcome is Outcome.FENCED
    await recover_campaign(raw_redis, store, "c1", TTL)
    assert (await sale.claim("c1", "bob", "tee")).outcome is Outcome.OK


async def test_an_older_redis_is_detected_and_healed(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5))
    await sale.claim("c1", "ann", "tee")
    await persister.drain()
    assert await redis_behind(raw_redis, store, "c1") is None
    await recover_campaign(raw_redis, store, "c1", TTL)  # epoch 2 in both
    meta = campaign_keys("c1").meta
    await raw_redis.hset(meta, "epoch", "1")  # as if Redis came back from an older AOF
    assert "epoch" in (await redis_behind(raw_redis, store, "c1") or "")
    (healed,) = await heal(raw_redis, store, TTL)
    assert healed.epoch == 3 and await redis_behind(raw_redis, store, "c1") is None
    await raw_redis.hset(meta, "evseq", "1")  # fewer events than the store has
    assert await redis_behind(raw_redis, store, "c1")
    assert len(await heal(raw_redis, store, TTL)) == 1
    assert await heal(raw_redis, store, TTL) == []


async def test_reconcile_compares_at_the_same_event(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=50, per_user=None))
    for i in range(10):
        await sale.claim("c1", f"u{i}", "tee")
    await persister.drain()
    for i in range(10, 20):  # Redis moves on; the store lags behind
        r = await sale.claim("c1", f"u{i}", "tee")
        if r.claim and i % 2:
            await sale.confirm(r.claim.claim_id, f"u{i}")
    assert await reconcile_campaign(raw_redis, store, "c1") == []
    await raw_redis.hincrby(campaign_keys("c1").stock, "tee.a", 1)  # a unit from nowhere
    (diff,) = await reconcile(raw_redis, store)
    assert (diff.sku, diff.counter, diff.redis - diff.store) == ("tee", "available", 1)


async def test_recover_drains_what_the_store_has_not_seen(
        sale: Engine, raw_redis: "Redis[str]", store: Store, store_settings: Settings) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5))
    r = await sale.claim("c1", "ann", "tee")  # never persisted before the rebuild
    assert r.claim
    await recover_campaign(raw_redis, store, "c1", TTL)
    stats = await sale.stats("c1")
    assert stats and stats.skus[0].held == 1
    assert (await sale.confirm(r.claim.claim_id, "ann")).outcome is Outcome.OK
    await Persister(raw_redis, store, store_settings).drain()
    await assert_store_matches_redis(sale, store, "c1")
    assert (await audit(store))["ok"]


async def test_recovery_restores_the_waiting_room_and_the_throttle_as_patched(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    # An emptied Redis must not come back as an open door: the waiting room and
    # the throttle (with its lists) return as defined and then patched.
    room = {"rate_per_s": 10, "burst": 10, "max_active": 100, "admission_window_s": 60,
            "token_ttl_s": 60}
    guard = {"user": {"per_s": 1, "burst": 5}, "block": {"users": ["mallory"]}}
    await sale.define_campaign("c1", campaign_spec(stock=5, waiting_room=room, throttle=guard,
                                                   waitlist={"max_length": 10}))
    patch = msgspec.convert({"waiting_room": {"rate_per_s": 50},
                             "throttle": {"block": {"users": ["mallory", "trudy"]}}},
                            CampaignPatch)
    assert await sale.patch_campaign("c1", patch, "ops") is Outcome.OK
    meta, lists = campaign_keys("c1").meta, lists_key("c1")
    before, lists_before = await raw_redis.hgetall(meta), await raw_redis.hgetall(lists)
    assert before["wr_rate"] == "50.0" and "u:trudy" in lists_before
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c1", TTL)
    after = await raw_redis.hgetall(meta)
    runtime = ("wr_served", "wr_tokens", "wr_at", "wr_seq")  # state: the tickets are gone
    config = [f for f in before if f.startswith(("wr_", "wl_", "offer_", "th"))
              and f not in runtime]
    assert len(config) > 8
    assert {f: after.get(f) for f in config} == {f: before[f] for f in config}
    assert await raw_redis.hgetall(lists) == lists_before
    assert (await sale.claim("c1", "ann", "tee")).outcome is Outcome.ADMISSION_REQUIRED


async def test_recovery_rebuilds_the_waitlists_in_their_order(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=1, per_user=2,
                                                   waitlist={"max_length": 10}))
    first = await sale.claim("c1", "ann", "tee")
    assert first.claim
    for user in ("bob", "cat", "dan", "eve"):
        assert (await sale.join_waitlist("c1", user, "tee"))[0] is Outcome.OK
    await sale.cancel(first.claim.claim_id, "ann")  # bob is offered the unit
    await sale.leave_waitlist("c1", "dan", "tee")
    k = campaign_keys("c1")
    before = {"waitlist": await raw_redis.zrange(k.waitlist, 0, -1),
              "wlentries": await raw_redis.hgetall(k.wlentries),
              "offers": await raw_redis.hgetall(k.offers)}
    assert len(before["waitlist"]) == 2 and len(before["offers"]) == 1
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c1", TTL)
    after = {"waitlist": await raw_redis.zrange(k.waitlist, 0, -1),
             "wlentries": await raw_redis.hgetall(k.wlentries),
             "offers": await raw_redis.hgetall(k.offers)}
    assert after == before
    # The line goes on where it was: a new joiner queues behind cat and eve, bob's
    # declined offer goes to cat, and no offer reuses an id from before the loss.
    assert (await sale.join_waitlist("c1", "fay", "tee"))[0] is Outcome.OK
    offer = next(e.offer for e in (await sale.waitlist("c1", "bob"))[1] if e.offer)
    await sale.cancel(offer.claim_id, "bob")
    cat = (await sale.waitlist("c1", "cat"))[1]
    assert cat[0].status == "offered" and cat[0].offer
    assert cat[0].offer.claim_id != offer.claim_id
    positions = {u: (await sale.waitlist("c1", u))[1][0].position for u in ("eve", "fay")}
    assert positions == {"eve": 1, "fay": 2}
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    summary = await audit(store)
    assert summary["ok"], summary
