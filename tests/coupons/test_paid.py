"""Paid vouchers against a real Valkey: hold, pay, lapse, refund, and their races."""

import asyncio
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.coupons.spec import RedemptionRequest
from stampede.domain.models import CampaignSpec
from stampede.state import keys
from tests.conftest import iso

COFFEE = {"kind": "pack", "item": "coffee", "face_value": 450, "uses": 10,
          "valid_days": 90}
PRICE = 3900


def paid_spec(stock: int = 100, per_user: int | None = None, hold_ttl_s: int = 600,
              budget: int | None = None, **coupons: Any) -> CampaignSpec:
    """A drop selling a 10-cup coffee pack (paid) beside a free coupon."""
    limits: dict[str, Any] = {"max_per_claim": 5}
    if per_user is not None:
        limits["per_user"] = per_user
    drop: dict[str, Any] = {"templates": {"coffee10": COFFEE, "five": {
        "kind": "fixed_off", "face_value": 500, "valid_days": 30}}, "paid": ["coffee10"],
        **coupons}
    if budget is not None:
        drop["budget"] = budget
    raw = {"name": "coffee", "opens_at": iso(-60), "closes_at": iso(3600),
           "hold_ttl_s": hold_ttl_s, "limits": limits,
           "skus": [{"sku": "coffee10", "price": PRICE,
                     "waves": [{"at": iso(-30), "qty": stock}]},
                    {"sku": "five", "price": 0, "waves": [{"at": iso(-30), "qty": stock}]}],
           "coupons": drop}
    return msgspec.convert(raw, CampaignSpec)


async def stock(engine: Engine, sku: str = "coffee10") -> dict[str, int]:
    raw = await engine.redis.hmget(keys.campaign_keys("cafe").stock, f"{sku}.a", f"{sku}.h",
                                   f"{sku}.s")
    return dict(zip("ahs", (int(x or 0) for x in raw), strict=True))


async def later(engine: Engine, seconds: int) -> None:
    """Move the drop's clock forward (the scripts read meta time_offset_ms)."""
    await engine.redis.hincrby(keys.campaign_keys("cafe").meta, "time_offset_ms",
                               seconds * 1000)


async def test_claim_holds_then_payment_issues(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec())
    r = await engine.coupons.claim("cafe", "ann", "coffee10", 2)
    assert r.outcome is Outcome.OK, r
    assert r.view.status == "held" and r.view.coupons == [] and r.view.hold_deadline
    assert await stock(engine) == {"a": 98, "h": 2, "s": 0}
    assert await engine.coupons.wallet("ann") == []
    hold = (await engine.coupons.paid.hold(r.view.claim_id, "ann")).view
    assert (hold.status, hold.amount, hold.coupons) == ("held", 2 * PRICE, [])

    paid = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    assert paid.outcome is Outcome.OK, paid
    assert paid.view.status == "confirmed" and paid.view.payment == "pay_1"
    assert len(paid.view.coupons) == 2
    assert await stock(engine) == {"a": 98, "h": 0, "s": 2}
    wallet = await engine.coupons.wallet("ann")
    assert sorted(c.coupon_id for c in wallet) == paid.view.coupons
    assert all(c.uses_left == 10 for c in wallet)
    # Paying again with the same payment is a retry; another payment is refused.
    again = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    assert again.outcome is Outcome.OK and again.view.coupons == paid.view.coupons
    other = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_2")
    assert (other.outcome, other.reason) == (Outcome.CONFLICT, "voucher_paid_other")
    assert len(await engine.coupons.wallet("ann")) == 2


async def test_a_free_sku_of_the_same_drop_issues_at_once(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec())
    r = await engine.coupons.claim("cafe", "ann", "five")
    assert r.view.status == "issued" and len(r.view.coupons) == 1
    refused = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    assert (refused.outcome, refused.reason) == (Outcome.CONFLICT, "not_a_voucher")


async def test_an_unpaid_hold_lapses_and_returns_its_units(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec(stock=3, per_user=3, hold_ttl_s=60))
    r = await engine.coupons.claim("cafe", "ann", "coffee10", 3)
    assert (await engine.coupons.claim("cafe", "bob", "coffee10")).outcome is Outcome.SOLD_OUT
    await later(engine, 61)
    assert await engine.sweep("cafe") == 1
    assert await stock(engine) == {"a": 3, "h": 0, "s": 0}
    assert (await engine.coupons.paid.hold(r.view.claim_id, "ann")).view.status == "expired"
    late = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    assert (late.outcome, late.reason) == (Outcome.HOLD_EXPIRED, "hold_expired")
    assert await engine.coupons.wallet("ann") == []
    # The units are claimable again, and the buyer's per-user count came back.
    assert (await engine.coupons.claim("cafe", "ann", "coffee10", 3)).outcome is Outcome.OK


async def test_a_payment_after_the_deadline_lapses_the_hold_itself(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec(stock=2, hold_ttl_s=60))
    r = await engine.coupons.claim("cafe", "ann", "coffee10")
    await later(engine, 61)  # no sweep yet
    late = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    assert late.outcome is Outcome.HOLD_EXPIRED
    assert await stock(engine) == {"a": 2, "h": 0, "s": 0}


async def test_holds_keep_their_face_value_from_the_budget(engine: Engine) -> None:
    # Budget for two packs: two held, a third refused even before anyone paid.
    await engine.define_campaign("cafe", paid_spec(budget=2 * 4500, hold_ttl_s=60))
    a = await engine.coupons.claim("cafe", "ann", "coffee10")
    b = await engine.coupons.claim("cafe", "bob", "coffee10")
    c = await engine.coupons.claim("cafe", "cat", "coffee10")
    assert (a.outcome, b.outcome) == (Outcome.OK, Outcome.OK)
    assert (c.outcome, c.reason) == (Outcome.SOLD_OUT, "budget")
    await engine.coupons.paid.confirm(a.view.claim_id, "ann", "pay_a")
    assert (await engine.coupons.claim("cafe", "cat", "coffee10")).reason == "budget"
    await later(engine, 61)
    await engine.sweep("cafe")  # bob's lapse gives back his pack's value
    assert (await engine.coupons.claim("cafe", "cat", "coffee10")).outcome is Outcome.OK


async def test_refund_voids_an_unused_voucher_once(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec(budget=4500))
    r = await engine.coupons.claim("cafe", "ann", "coffee10")
    unpaid = await engine.coupons.paid.refund(r.view.claim_id, "ann", "ann")
    assert (unpaid.outcome, unpaid.reason) == (Outcome.CONFLICT, "voucher_unpaid")
    await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    assert (await engine.coupons.claim("cafe", "bob", "coffee10")).reason == "budget"
    done = await engine.coupons.paid.refund(r.view.claim_id, "ann", "ann")
    assert done.outcome is Outcome.OK, done
    assert (done.view.status, done.view.refunded_amount) == ("refunded", PRICE)
    assert [c.status for c in await engine.coupons.wallet("ann")] == ["refunded"]
    again = await engine.coupons.paid.refund(r.view.claim_id, "ann", "ann")
    assert again.outcome is Outcome.OK and again.view.refunded_amount == PRICE
    # The face value went back to the budget: another pack may be sold.
    assert (await engine.coupons.claim("cafe", "bob", "coffee10")).outcome is Outcome.OK


async def test_a_used_voucher_cannot_be_refunded(engine: Engine) -> None:
    from tests.coupons.helpers import merchant
    await engine.define_campaign("cafe", paid_spec())
    r = await engine.coupons.claim("cafe", "ann", "coffee10")
    paid = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    shop = await merchant(engine)
    coupon = paid.view.coupons[0]
    code = (await engine.coupons.rotating_code(coupon, "ann")).view.code
    used = await engine.coupons.redeem(shop, RedemptionRequest(code=code, order_id="o1",
                                                               order_amount=900))
    assert used.outcome is Outcome.OK, used
    refused = await engine.coupons.paid.refund(r.view.claim_id, "ann", "ann")
    assert (refused.outcome, refused.reason) == (Outcome.CONFLICT, "voucher_used")
    assert (await engine.coupons.paid.hold(r.view.claim_id, "ann")).view.status == "confirmed"


async def test_nobody_reads_pays_or_refunds_anothers_hold(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec())
    r = await engine.coupons.claim("cafe", "ann", "coffee10")
    cid = r.view.claim_id
    assert (await engine.coupons.paid.hold(cid, "eve")).outcome is Outcome.NOT_FOUND
    assert (await engine.coupons.paid.confirm(cid, "eve", "p")).outcome is Outcome.NOT_FOUND
    await engine.coupons.paid.confirm(cid, "ann", "pay_1")
    assert (await engine.coupons.paid.refund(cid, "eve", "eve")).outcome is Outcome.NOT_FOUND
    assert (await engine.coupons.paid.hold(cid, "ann")).view.status == "confirmed"


async def test_paid_vouchers_need_a_price(engine: Engine) -> None:
    from stampede.errors import ValidationError
    spec = paid_spec()
    spec.skus[0].price = 0
    with pytest.raises(ValidationError, match="coffee10.*price above 0"):
        await engine.define_campaign("cafe", spec)


# -- concurrency --------------------------------------------------------------


async def test_thousands_of_paid_claims_never_oversell_a_small_budget(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec(stock=1000, budget=25 * 4500))
    answers = await asyncio.gather(*(engine.coupons.claim("cafe", f"u{i}", "coffee10")
                                     for i in range(2000)))
    held = [a for a in answers if a.outcome is Outcome.OK]
    assert len(held) == 25
    assert {a.reason for a in answers if a.outcome is not Outcome.OK} == {"budget"}
    paid = await asyncio.gather(*(engine.coupons.paid.confirm(a.view.claim_id,
                                                              f"u{i}", f"pay{i}")
                                  for i, a in enumerate(answers) if a.outcome is Outcome.OK))
    assert all(p.outcome is Outcome.OK for p in paid)
    assert await stock(engine) == {"a": 975, "h": 0, "s": 25}
    stats = await engine.redis.hget(keys.coupon_keys("cafe").drop.cstats, "*|value")
    assert int(stats) == 25 * 4500


async def test_lapsed_holds_return_exactly_their_units(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec(stock=300, hold_ttl_s=60))
    answers = await asyncio.gather(*(engine.coupons.claim("cafe", f"u{i}", "coffee10",
                                                          1 + i % 3) for i in range(150)))
    assert all(a.outcome is Outcome.OK for a in answers[:100])
    held = sum(a.view.qty for a in answers if a.outcome is Outcome.OK)
    paid_units = sum(a.view.qty for i, a in enumerate(answers)
                     if a.outcome is Outcome.OK and i % 2 == 0)
    await asyncio.gather(*(engine.coupons.paid.confirm(a.view.claim_id, f"u{i}", f"p{i}")
                           for i, a in enumerate(answers)
                           if a.outcome is Outcome.OK and i % 2 == 0))
    assert (await stock(engine))["h"] == held - paid_units
    await later(engine, 61)
    while await engine.sweep("cafe"):
        pass
    assert await stock(engine) == {"a": 300 - paid_units, "h": 0, "s": paid_units}


async def test_payment_racing_the_lapse_resolves_one_way(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec(stock=200, hold_ttl_s=60))
    answers = await asyncio.gather(*(engine.coupons.claim("cafe", f"u{i}", "coffee10")
                                     for i in range(100)))
    await later(engine, 61)
    pays, _ = await asyncio.gather(
        asyncio.gather(*(engine.coupons.paid.confirm(a.view.claim_id, f"u{i}", f"p{i}")
                         for i, a in enumerate(answers))),
        engine.sweep("cafe"))
    # Past the deadline: whoever runs first lapses the hold; no payment succeeds late.
    assert {p.outcome for p in pays} == {Outcome.HOLD_EXPIRED}
    assert await stock(engine) == {"a": 200, "h": 0, "s": 0}


async def test_payment_racing_the_lapse_at_the_deadline(engine: Engine) -> None:
    """Right at the deadline each hold ends exactly one way: paid (coupons issued,
    unit sold) or lapsed (unit back, no coupon), never both, never neither."""
    await engine.define_campaign("cafe", paid_spec(stock=200, hold_ttl_s=1))
    answers = await asyncio.gather(*(engine.coupons.claim("cafe", f"u{i}", "coffee10")
                                     for i in range(100)))

    async def sweeper() -> None:
        for _ in range(40):
            await engine.sweep("cafe")
            await asyncio.sleep(0.02)

    async def pay(i: int, claim_id: str) -> Any:
        await asyncio.sleep((i % 50) * 0.02)
        return await engine.coupons.paid.confirm(claim_id, f"u{i}", f"p{i}")

    pays, _ = await asyncio.gather(
        asyncio.gather(*(pay(i, a.view.claim_id) for i, a in enumerate(answers))), sweeper())
    await later(engine, 5)
    await engine.sweep("cafe")
    ok = sum(p.outcome is Outcome.OK for p in pays)
    assert ok + sum(p.outcome is Outcome.HOLD_EXPIRED for p in pays) == 100
    assert await stock(engine) == {"a": 200 - ok, "h": 0, "s": ok}
    wallets = await asyncio.gather(*(engine.coupons.wallet(f"u{i}") for i in range(100)))
    for p, wallet in zip(pays, wallets, strict=True):  # coupons exactly for those paid
        assert len(wallet) == (1 if p.outcome is Outcome.OK else 0)


async def test_the_buyer_may_cancel_a_hold_but_not_confirm_it_as_a_sale(engine: Engine) -> None:
    await engine.define_campaign("cafe", paid_spec(stock=2))
    r = await engine.coupons.claim("cafe", "ann", "coffee10", 2)
    # The sale's confirm would sell it without coupons: refused, nothing changed.
    assert (await engine.confirm(r.view.claim_id, "ann")).outcome is Outcome.CONFLICT
    assert await stock(engine) == {"a": 0, "h": 2, "s": 0}
    assert (await engine.cancel(r.view.claim_id, "ann")).outcome is Outcome.OK
    assert await stock(engine) == {"a": 2, "h": 0, "s": 0}
    assert (await engine.coupons.paid.hold(r.view.claim_id, "ann")).view.status == "cancelled"
    late = await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    assert (late.outcome, late.reason) == (Outcome.HOLD_EXPIRED, "hold_expired")
    assert await engine.coupons.wallet("ann") == []


async def test_a_sale_refund_of_a_paid_voucher_is_refused(engine: Engine) -> None:
    from stampede.domain.refunds import RefundRequest
    await engine.define_campaign("cafe", paid_spec())
    r = await engine.coupons.claim("cafe", "ann", "coffee10")
    await engine.coupons.paid.confirm(r.view.claim_id, "ann", "pay_1")
    refused = await engine.refunds.refund(r.view.claim_id, RefundRequest(), "op")
    assert (refused.outcome, refused.reason) == (Outcome.CONFLICT, "paid_voucher_refund")
    assert await stock(engine) == {"a": 99, "h": 0, "s": 1}
    assert [c.status for c in await engine.coupons.wallet("ann")] == ["active"]
