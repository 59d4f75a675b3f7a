"""Coupon drops split across shards against a real Valkey: claims routed by user and
borrowing between shards, codes that name their shard for redemption and rollback,
gifts to users of other shards, and what a sharded drop refuses.

The concurrency test fails on a broken implementation: a dry shard that refuses
without borrowing answers "gone" while quota remains elsewhere (the false sold-out
window), a claim routed by anything but the user oversteps per-user limits, a move
or a retried claim that is not exactly-once issues more coupons than the quota.
"""

import asyncio
import time
from collections import Counter, defaultdict
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome, Settings
from stampede.domain import shards
from stampede.domain.coupons.spec import CouponDropPatch, RedemptionRequest
from stampede.errors import ValidationError
from stampede.state import keys
from tests.coupons.helpers import FIVE_OFF, drop_spec, merchant
from tests.domain.test_concurrency import _clone
from tests.shards.test_shards import FALSE_SOLD_OUT_BOUND_S

N = 4


def users_of(shard: int, count: int, n: int = N) -> list[str]:
    """`count` user ids that shard `shard` of n serves."""
    return [u for u in (f"u{i}" for i in range(count * n * 4))
            if shards.shard_of_user(u, n) == shard][:count]


async def test_a_sharded_drop_refuses_what_counts_one_total(engine: Engine) -> None:
    cases: dict[str, dict[str, Any]] = {
        "budget": {"budget": 10_000}, "per_day": {"per_day": 10},
        "per_person": {"per_person": 1}, "merchant_daily_cap": {"merchant_daily_cap": 5},
        "referral": {"referral": {"sku": "five", "referrer_sku": "five"}},
        "points": {"points": {"five": 100}}, "paid": {"paid": ["five"]}}
    for field, extra in cases.items():
        with pytest.raises(ValidationError, match=f"^coupons.{field}: not supported with "
                                                  "shards > 1 \\("):
            await engine.define_campaign("drop", drop_spec(campaign={"shards": 2}, **extra))
    with pytest.raises(ValidationError, match="^coupons.templates.five.gifts_count_to_limit"):
        await engine.define_campaign("drop", drop_spec(
            templates={"five": FIVE_OFF | {"transferable": True,
                                            "gifts_count_to_limit": True}},
            campaign={"shards": 2}))
    assert await engine.redis.exists(keys.campaign_keys("drop").meta) == 0  # nothing written
    spec = drop_spec(per_user=1, campaign={"shards": 2}, per_user_per_day=1,
                     promo_codes={"HELLO": {"sku": "five"}})
    assert await engine.define_campaign("drop", spec) == (Outcome.OK, True)
    with pytest.raises(ValidationError, match="^per_day: not supported with shards > 1"):
        await engine.coupons.patch_drop("drop", CouponDropPatch(per_day=5), "ops")


async def test_thousands_of_concurrent_coupon_claims_across_shards(
        engine: Engine, settings: Settings) -> None:
    quota, per_user, claims = 400, 2, 3000
    await engine.define_campaign("drop", drop_spec(stock=quota, per_user=per_user,
                                                   campaign={"shards": N}))
    gateways = [engine] + [await _clone(engine, settings) for _ in range(3)]
    # Skewed: shard 0 serves most claimants; the others' 30 users each can take at most
    # 60 of their shard's 100 units, so the quota is issued only if shard 0 borrows.
    users = users_of(0, 900) + [u for k in (1, 2, 3) for u in users_of(k, 30)]
    t0 = time.monotonic()

    async def one(i: int) -> tuple[str, str, Any, float, float]:
        # Every fifth claim is a retry of the one before it (same user and key), sent
        # through another gateway at the same time: one effect, the same answer.
        j = i - 1 if i % 5 == 4 else i
        user, key = users[j % len(users)], f"k{j}"
        sent = time.monotonic() - t0
        a = await gateways[i % 4].coupons.claim("drop", user, "five", 1,
                                                idempotency_key=key)
        return user, key, a, sent, time.monotonic() - t0

    try:
        results = await asyncio.gather(*(one(i) for i in range(claims)))
    finally:
        for g in gateways[1:]:
            await g.close()
    by_key: dict[str, set[tuple[Outcome, str]]] = defaultdict(set)
    for _, key, a, _, _ in results:
        by_key[key].add((a.outcome, a.view.claim_id if a.view else a.reason))
    assert all(len(answers) == 1 for answers in by_key.values())  # a retry: the same answer
    firsts = {key: next(iter(v)) for key, v in by_key.items()}
    outcomes = Counter(o for o, _ in firsts.values())
    assert outcomes[Outcome.OK] == quota  # exactly the quota issued
    assert outcomes[Outcome.OK] + outcomes[Outcome.SOLD_OUT] + \
        outcomes[Outcome.LIMIT_EXCEEDED] == len(firsts)
    claimed: dict[str, set[str]] = defaultdict(set)
    for u, _, a, _, _ in results:
        if a.outcome is Outcome.OK:
            claimed[u].add(a.view.claim_id)
    assert claimed and max(len(c) for c in claimed.values()) <= per_user  # nobody over
    issued = {c.coupon_id for _, _, a, _, _ in results if a.view for c in a.view.coupons}
    assert len(issued) == quota  # a retry names the same coupon, never a second one
    claimants = {u for u, _, a, _, _ in results if a.outcome is Outcome.OK}
    for user in claimants:  # nobody over the limit: a user's wallet is on one shard
        assert len(await engine.coupons.wallet(user)) <= per_user
    stats = await engine.coupons.stats("drop")
    assert stats is not None and stats.totals.issued == quota
    # No false "gone": nothing is released during the run, so a claim sent after the
    # first SOLD_OUT answer that still got a coupon measures the window.
    first_gone = min(done for _, _, a, _, done in results if a.outcome is Outcome.SOLD_OUT)
    last_ok_sent = max(sent for _, _, a, sent, _ in results if a.outcome is Outcome.OK)
    assert last_ok_sent - first_gone <= FALSE_SOLD_OUT_BOUND_S
    report = await shards.audit(engine.redis, "drop", N)
    assert report.problems == []  # each user on their shard; lent = borrowed
    assert (report.skus["five"]["sold"], report.skus["five"]["available"]) == (quota, 0)
    assert report.skus["five"]["lent"] >= 3 * (quota // N - 2 * 30)  # shard 0 borrowed


async def test_redeem_rollback_gift_and_patch_across_shards(engine: Engine) -> None:
    await engine.define_campaign("drop", drop_spec(
        stock=8, per_user=5, templates={"five": FIVE_OFF | {"transferable": True}},
        campaign={"shards": N}))  # 8 coupons, 2 a shard
    ann, bob = users_of(0, 1)[0], users_of(3, 1)[0]
    got = [await engine.coupons.claim("drop", ann, "five", 1) for _ in range(5)]
    assert [a.outcome for a in got] == [Outcome.OK] * 5  # 3 borrowed from other shards
    ids = [a.view.coupons[0].coupon_id for a in got]
    assert {a.view.campaign_id for a in got} == {"drop"}
    assert {keys.campaign_of_claim(c) for c in ids} == {keys.shard_id("drop", 0, N)}
    till = await merchant(engine)
    # A code names its shard: the till redeems and rolls back on it.
    code = got[0].view.coupons[0].code
    r = await engine.coupons.redeem(till, RedemptionRequest(code=code, order_id="o1",
                                                            order_amount=1200))
    assert r.outcome is Outcome.OK and r.view.discount == 500
    again = await engine.coupons.redeem(till, RedemptionRequest(code=code, order_id="o1",
                                                                order_amount=1200))
    assert again.reason == "replayed" and again.view.redemption_id == r.view.redemption_id
    assert (await engine.coupons.rollback(r.view.redemption_id, "m1")).outcome is Outcome.OK
    assert (await engine.coupons.rollback(r.view.redemption_id, "m1")).reason == "replayed"
    # A gift to a user another shard serves: it stays on the giver's shard, in the
    # recipient's wallet there, and the recipient's lookups find it.
    offer = await engine.coupons.offer_gift(ids[1], ann)
    assert offer.outcome is Outcome.OK and offer.view.transfer_token.startswith("drop.")
    accepted = await engine.coupons.accept_gift(offer.view.transfer_token, bob)
    assert accepted.outcome is Outcome.OK and accepted.view.coupon_id == ids[1]
    assert [c.coupon_id for c in await engine.coupons.wallet(bob)] == [ids[1]]
    assert (await engine.coupons.coupon(ids[1], ann)).status == "transferred"  # type: ignore[union-attr]
    gift_code = accepted.view.code
    b = await engine.coupons.redeem(till, RedemptionRequest(code=gift_code, order_id="o2",
                                                            order_amount=900))
    assert b.outcome is Outcome.OK
    # Bob's own claim: on his shard, borrowing what is left.
    mine = await engine.coupons.claim("drop", bob, "five", 1)
    assert mine.outcome is Outcome.OK
    assert keys.campaign_of_claim(mine.view.claim_id) == keys.shard_id("drop", 3, N)
    stats = await engine.coupons.stats("drop")
    assert stats is not None
    t = stats.totals
    assert (t.issued, t.redeemed, t.rolled_back, t.transferred) == (6, 2, 1, 1)
    # A live change reaches every shard's coupons.
    patched = await engine.coupons.patch_drop("drop", msgspec.convert(
        {"templates": {"five": {"valid_days": 60}}}, CouponDropPatch), "ops")
    assert patched.outcome is Outcome.OK and patched.view.campaign_id == "drop"
    assert patched.view.coupons_extended == 5  # the active ones, on shards 0 and 3
    views = await engine.coupons.wallet(ann) + await engine.coupons.wallet(bob)
    active = [v for v in views if v.status == "active"]
    assert len(active) == 5 and all((v.valid_to - v.claimed_at).days >= 59 for v in active)
    assert (await shards.audit(engine.redis, "drop", N)).problems == []


async def test_grants_into_a_sharded_drop_land_on_each_users_shard(engine: Engine) -> None:
    await engine.define_campaign("drop", drop_spec(stock=40, per_user=1,
                                                   campaign={"shards": N}))
    users = [u for k in range(N) for u in users_of(k, 2)]
    first = await engine.grants.grant("drop", "five", users, "welcome", "ops")
    assert [r.user for r in first] == users and {r.outcome for r in first} == {"granted"}
    again = await engine.grants.grant("drop", "five", users, "welcome", "ops")
    assert {r.outcome for r in again} == {"already"}  # keyed: once per user
    for user in users:  # on the user's shard, counted to their limit there
        (coupon,) = await engine.coupons.wallet(user)
        k = shards.shard_of_user(user, N)
        assert keys.campaign_of_claim(coupon.coupon_id) == keys.shard_id("drop", k, N)
        refused = await engine.coupons.claim("drop", user, "five")
        assert refused.outcome is Outcome.LIMIT_EXCEEDED
    assert (await shards.audit(engine.redis, "drop", N)).problems == []


async def test_a_promo_code_claim_borrows_for_the_sku_its_code_names(engine: Engine) -> None:
    await engine.define_campaign("drop", drop_spec(
        stock=N, per_user=5, campaign={"shards": N},
        promo_codes={"HELLO": {"sku": "five", "per_user": 3}}))  # one unit a shard
    ann = users_of(1, 1)[0]
    got = [await engine.coupons.claim("drop", ann, "", code="HELLO") for _ in range(4)]
    assert [a.outcome for a in got] == [Outcome.OK] * 3 + [Outcome.LIMIT_EXCEEDED]
    assert {a.view.sku for a in got[:3]} == {"five"}  # two of them borrowed
    assert (await shards.audit(engine.redis, "drop", N)).problems == []
