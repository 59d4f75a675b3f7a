"""Paid vouchers: a coupon SKU sold at a price follows the sale flow.

    claim (coupon_claim.lua: held, stock a -> h, face value kept from the budget)
      -> confirm with the payment (coupon_pay.lua: claim confirmed, coupons issued)
      -> refund while every coupon is unused (coupon_refund.lua: coupons voided)
    an unpaid hold lapses at its deadline (the sweeper, sweep.lua): its units go back

Every step is one script, every check before the first write, and each is
idempotent by the claim id: paying again with the same payment, or refunding a
refunded voucher, answers the first result again. Only the buyer may read,
pay or refund their hold: another user's claim is NOT_FOUND (docs/paid-vouchers.md).
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from stampede.domain.coupons.spec import PaidHoldStatus, PaidHoldView
from stampede.domain.models import from_ms
from stampede.domain.seen import campaign_seen
from stampede.errors import ValidationError
from stampede.outcomes import OUTCOMES, Outcome
from stampede.state import keys, records
from stampede.state.scripts import ScriptRegistry

if TYPE_CHECKING:
    from redis.asyncio import Redis


def _claim_cid(claim_id: str, user: str) -> str:
    cid = keys.campaign_of_claim(claim_id)
    if cid is None:
        raise ValidationError("claim id is not valid")
    if not keys.valid_user_id(user):
        raise ValidationError("user id is not valid")
    return cid


@dataclass(frozen=True)
class Answer:
    """An outcome, the refusal's reason ('' if none), and the hold's view when OK."""
    outcome: Outcome
    reason: str = ""
    view: PaidHoldView | None = None
    params: dict[str, int] = field(default_factory=dict)


def _answer(outcome: Outcome, reason: str = "", view: PaidHoldView | None = None) -> Answer:
    return Answer(outcome, reason, view)


class PaidVouchers:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry) -> None:
        self.redis = redis
        self.scripts = scripts

    async def hold(self, claim_id: str, user: str) -> Answer:
        """The buyer's paid voucher claim: its hold, payment and refund."""
        cid = _claim_cid(claim_id, user)
        ks = keys.coupon_keys(cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(ks.campaign.meta, "state", "fenced")
            pipe.hget(ks.campaign.claims, claim_id)
            pipe.hget(ks.drop.cusers, f"pv|{claim_id}")
            (state, fenced), raw_claim, raw_paid = await pipe.execute()
        campaign = campaign_seen(state, fenced)  # (in the same MULTI: api.healing)
        if campaign != "live":
            return _answer(Outcome.CAMPAIGN_MISSING if campaign == "missing" else Outcome.FENCED,
                           "")
        if raw_claim is None or raw_paid is None:
            return _answer(Outcome.NOT_FOUND, "not_found")
        claim = records.CLAIM.decode(raw_claim)
        if claim.user != user:
            return _answer(Outcome.NOT_FOUND, "not_found")
        paid = records.PAID.decode(raw_paid)
        status = cast(PaidHoldStatus, {"paid": "confirmed", "refunded": "refunded"}.get(
            paid.status, claim.status))
        coupons: list[str] = []
        if paid.status != "held":
            owned = sorted(cast(set[str], await self.redis.smembers(
                keys.wallet_key(cid, user))))
            found = cast(list[str | None], await self.redis.hmget(ks.drop.cpn, owned)
                         if owned else [])
            coupons = [c for c, raw in zip(owned, found, strict=True)
                       if raw is not None and records.COUPON.decode(raw).claim == claim_id]
        return _answer(Outcome.OK, "", PaidHoldView(
            claim_id=claim_id, campaign_id=cid, sku=claim.sku, qty=claim.qty, status=status,
            amount=claim.price * claim.qty, hold_deadline=from_ms(claim.deadline),
            payment=paid.payment, refunded_amount=paid.refunded, coupons=coupons))

    async def confirm(self, claim_id: str, user: str, payment: str,
                      idempotency_key: str | None = None) -> Answer:
        """Pay a hold: its coupons are issued (once; the same payment again answers OK)."""
        cid = _claim_cid(claim_id, user)
        reply = await self.scripts.run(
            "coupon_pay", [*keys.coupon_keys(cid), keys.wallet_key(cid, user)],
            [claim_id, user, payment, idempotency_key or ""])
        return _reply(cid, claim_id, reply)

    async def refund(self, claim_id: str, user: str, actor: str,
                     idempotency_key: str | None = None) -> Answer:
        """Refund a paid voucher whose coupons are all unused (once; again answers OK)."""
        cid = _claim_cid(claim_id, user)
        reply = await self.scripts.run("coupon_refund", [*keys.coupon_keys(cid)],
                                       [claim_id, user, actor, idempotency_key or ""])
        return _reply(cid, claim_id, reply)


def _reply(cid: str, claim_id: str, reply: list[Any]) -> Answer:
    """coupon_pay's or coupon_refund's answer: a refusal, or the voucher as it is now."""
    outcome = OUTCOMES[int(reply[0])]
    if outcome is not Outcome.OK:
        return _answer(outcome, str(reply[1]))
    sku, qty, price, deadline, payment, refunded, status = reply[2:9]
    return _answer(Outcome.OK, "", PaidHoldView(
        claim_id=claim_id, campaign_id=cid, sku=str(sku), qty=int(qty),
        status="refunded" if status == "refunded" else "confirmed",
        amount=int(price) * int(qty), hold_deadline=from_ms(int(deadline)),
        payment=str(payment), refunded_amount=int(refunded),
        coupons=sorted(str(c) for c in reply[9:])))
