"""Gifting (races with redemption, single use, limits) and the expiry sweep."""

import asyncio

from stampede import Engine, Outcome
from stampede.domain.coupons.spec import RedemptionRequest
from tests.coupons.helpers import FIVE_OFF, drop_spec, merchant

GIFTABLE = {**FIVE_OFF, "transferable": True}


async def _claim(engine: Engine, user: str = "alice", sku: str = "five") -> tuple[str, str]:
    r = await engine.coupons.claim("d1", user, sku)
    assert r.outcome is Outcome.OK, r
    c = r.view.coupons[0]
    assert c.code
    return c.coupon_id, c.code


async def test_gift_moves_ownership_once(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(templates={"five": GIFTABLE}))
    coupon_id, old_code = await _claim(engine)
    assert (await engine.coupons.offer_gift(coupon_id, "bob")).outcome is Outcome.NOT_FOUND
    offer = await engine.coupons.offer_gift(coupon_id, "alice")
    token = offer.view.transfer_token
    assert (await engine.coupons.accept_gift(token, "alice")).reason == "own_gift"
    results = await asyncio.gather(*(engine.coupons.accept_gift(token, f"r{i}")
                                     for i in range(20)))
    winners = [i for i, r in enumerate(results) if r.outcome is Outcome.OK]
    assert len(winners) == 1
    assert {r.reason for r in results if r.outcome is not Outcome.OK} == {"gift_used"}
    winner = f"r{winners[0]}"
    (mine,) = await engine.coupons.wallet(winner)
    assert mine.status == "active" and mine.code != old_code
    (theirs,) = await engine.coupons.wallet("alice")
    assert theirs.status == "transferred" and theirs.code is None
    assert await engine.coupons.wallet("alice", status="active") == []
    m = await merchant(engine)
    req = RedemptionRequest(code=old_code, order_id="o", order_amount=1000)
    assert (await engine.coupons.redeem(m, req)).reason == "bad_code"  # the giver's code died
    # the new owner may pass it on; the old token stays dead
    assert (await engine.coupons.offer_gift(coupon_id, "alice")).outcome is Outcome.NOT_FOUND
    assert (await engine.coupons.offer_gift(coupon_id, winner)).outcome is Outcome.OK


async def test_only_transferable_active_coupons_are_gifted(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(templates={"five": FIVE_OFF, "gift": GIFTABLE}))
    coupon_id, _ = await _claim(engine, sku="five")
    assert (await engine.coupons.offer_gift(coupon_id, "alice")).reason == "not_transferable"
    coupon_id, code = await _claim(engine, sku="gift")
    first = (await engine.coupons.offer_gift(coupon_id, "alice")).view.transfer_token
    second = (await engine.coupons.offer_gift(coupon_id, "alice")).view.transfer_token
    assert (await engine.coupons.accept_gift(first, "bob")).outcome is Outcome.NOT_FOUND
    m = await merchant(engine)
    await engine.coupons.redeem(m, RedemptionRequest(code=code, order_id="o", order_amount=900))
    assert (await engine.coupons.accept_gift(second, "bob")).reason == "gift_void"
    assert (await engine.coupons.offer_gift(coupon_id, "alice")).reason == "used"


async def test_gift_offers_expire(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(templates={"five": GIFTABLE}))
    coupon_id, _ = await _claim(engine)
    token = (await engine.coupons.offer_gift(coupon_id, "alice", ttl_ms=60_000)).view.transfer_token
    await engine.set_clock_offset("d1", 61_000)
    assert (await engine.coupons.accept_gift(token, "bob")).reason == "gift_expired"


async def test_gifting_while_redeeming(engine: Engine) -> None:
    """Either the redemption or the transfer wins; never both, never a used coupon moved."""
    await engine.define_campaign("d1", drop_spec(stock=500, templates={"five": GIFTABLE}))
    m = await merchant(engine)
    for i in range(30):
        coupon_id, code = await _claim(engine, f"g{i}")
        token = (await engine.coupons.offer_gift(coupon_id, f"g{i}")).view.transfer_token
        redeemed, accepted = await asyncio.gather(
            engine.coupons.redeem(m, RedemptionRequest(code=code, order_id=f"o{i}",
                                                       order_amount=1000)),
            engine.coupons.accept_gift(token, f"h{i}"))
        assert (redeemed.outcome is Outcome.OK) != (accepted.outcome is Outcome.OK)
        (c,) = await engine.coupons.wallet(f"h{i}") or [None]  # type: ignore[list-item]
        if redeemed.outcome is Outcome.OK:
            assert c is None and accepted.reason == "gift_void"
        else:
            assert c is not None and c.status == "active" and redeemed.reason == "bad_code"
    stats = await engine.coupons.stats("d1")
    assert stats and stats.totals.redeemed + stats.totals.transferred == 30


async def test_gifts_count_against_limits_where_the_template_says(engine: Engine) -> None:
    counted = {**GIFTABLE, "gifts_count_to_limit": True}
    await engine.define_campaign("d1", drop_spec(per_user=1, templates={"free": GIFTABLE,
                                                                       "counted": counted}))
    free, _ = await _claim(engine, "a1", "free")
    counted_id, _ = await _claim(engine, "a2", "counted")
    await _claim(engine, "bob", "free")  # bob is at his limit
    token = (await engine.coupons.offer_gift(free, "a1")).view.transfer_token
    assert (await engine.coupons.accept_gift(token, "bob")).outcome is Outcome.OK
    token = (await engine.coupons.offer_gift(counted_id, "a2")).view.transfer_token
    refused = await engine.coupons.accept_gift(token, "bob")
    assert (refused.outcome, refused.reason) == (Outcome.LIMIT_EXCEEDED, "per_user")
    assert refused.params == {"limit": 1, "held": 1}
    assert (await engine.coupons.accept_gift(token, "carol")).outcome is Outcome.OK
    assert (await engine.coupons.claim("d1", "carol", "free")).reason == "per_user"


async def test_expiry_sweep_expires_with_events(engine: Engine) -> None:
    templates = {"short": {**FIVE_OFF, "valid_days": 1}, "long": {**FIVE_OFF, "valid_days": 9}}
    await engine.define_campaign("d1", drop_spec(stock=300, templates=templates))
    for i in range(120):
        await _claim(engine, f"u{i}", "short")
    long_id, _ = await _claim(engine, "u0", "long")
    assert await engine.sweep("d1") == 0
    await engine.set_clock_offset("d1", 86_400_000 + 1000)
    assert await engine.sweep("d1") == 120
    assert await engine.sweep("d1") == 0
    stats = await engine.coupons.stats("d1")
    assert stats and stats.totals.expired == 120 and stats.templates["short"].expired == 120
    assert [c.coupon_id for c in await engine.coupons.wallet("u0", status="active")] == [long_id]
    events = await engine.redis.xrange("{c:d1}:events")
    assert sum(f["type"] == "coupon_expired" for _, f in events) == 120
