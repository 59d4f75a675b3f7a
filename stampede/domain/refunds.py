"""Refunds of sold claims (after the sale): one Lua operation, refund.lua.

An operator refunds any confirmed claim at any time; a buyer refunds their
own, within the campaign's window. Whole or some units; the campaign's
policy restocks them (waitlist head first) or retires them. A refund under
an idempotency key answers its first answer again.
"""

import uuid
from typing import Annotated, cast

from msgspec import Meta, Struct
from redis.asyncio import Redis

from stampede.domain.models import SkuRefunds
from stampede.errors import ValidationError
from stampede.outcomes import OUTCOMES, Outcome, parse_detail
from stampede.settings import Settings
from stampede.state import keys, records
from stampede.state.scripts import ScriptRegistry


class RefundRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    qty: Annotated[int, Meta(ge=1, le=1000)] | None = None
    """Units to refund; none: every unit not yet refunded (a whole refund)."""
    reason: Annotated[str, Meta(max_length=200)] = ""
    """Why, kept in the event (for the store, webhooks and the audit trail)."""


class RefundView(Struct, kw_only=True):
    claim_id: str
    status: str
    """The claim's status after the refund: refunded once no unit is left, else confirmed."""
    refunded: int
    """Units this refund gave back (0: a whole refund retried after it was done)."""
    left: int
    """Units of the claim still refundable."""
    amount: int
    """Refunded by this refund, in the smallest currency unit."""


class RefundResult(Struct, frozen=True):
    outcome: Outcome
    view: RefundView | None = None
    reason: str | None = None
    params: dict[str, int] = {}
    replayed: bool = False
    """A retry under the same key, answered with the first answer: nothing was done."""


class Refunds:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry, settings: Settings) -> None:
        self.redis = redis
        self.scripts = scripts
        self.settings = settings

    async def refund(self, claim_id: str, request: RefundRequest, actor: str,
                     buyer: str | None = None, op_key: str | None = None) -> RefundResult:
        """Refund `claim_id` as an operator (buyer None) or as its buyer."""
        cid = keys.campaign_of_claim(claim_id)
        if cid is None or (buyer is not None and not keys.valid_user_id(buyer)):
            return RefundResult(Outcome.NOT_FOUND, reason="no_claim")
        if op_key is not None and not 1 <= len(op_key) <= 255:
            raise ValidationError("Idempotency-Key must be 1 to 255 characters")
        who = buyer if buyer is not None else f"ops:{actor}"
        op = keys.idempotency_key(cid, who, f"refund:{op_key or uuid.uuid4().hex}")
        fp = f"{claim_id}:{request.qty or 0}"
        code, detail, units, left, amount = await self.scripts.run(
            "refund", [*keys.campaign_keys(cid), keys.refunds_key(cid),
                       keys.refund_totals_key(cid), op, keys.tickets_key(cid)],
            [claim_id, buyer or "", request.qty or 0, actor, request.reason,
             self.settings.idempotency_ttl_s * 1000, fp])
        outcome = OUTCOMES[int(code)]
        if outcome is not Outcome.OK:
            reason, params = parse_detail(str(detail))
            return RefundResult(outcome, reason=reason or None, params=params)
        status = "refunded" if int(left) == 0 else "confirmed"
        return RefundResult(outcome, RefundView(claim_id=claim_id, status=status,
                                                refunded=int(units), left=int(left),
                                                amount=int(amount)),
                            replayed=str(detail) == "replayed")

    async def claim_status(self, claim_id: str) -> str:
        """The claim's status as stored now ('?' if it is gone): for a refusal's message."""
        cid = keys.campaign_of_claim(claim_id)
        raw = await self.redis.hget(keys.campaign_keys(cid).claims, claim_id) if cid else None
        return records.CLAIM.decode(str(raw)).status if raw else "?"

    async def totals(self, cid: str) -> list[SkuRefunds]:
        """Refunded units and amounts of each SKU that has had a refund."""
        raw = cast(dict[str, str], await self.redis.hgetall(keys.refund_totals_key(cid)))
        skus = sorted({name.rsplit(".", 1)[0] for name in raw})
        return [SkuRefunds(sku=s, units=int(raw.get(f"{s}.u", 0)),
                           amount=int(raw.get(f"{s}.amt", 0))) for s in skus]

