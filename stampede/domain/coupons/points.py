"""Points exchange: a coupon priced in points, paid by a debit at the points service.

The points balance is not Stampede's: it lives in the programme's points
service, which debits idempotently by a debit id (docs/points.md has the
protocol and why). The engine derives the debit id from the drop, the
member and the claim's Idempotency-Key, and the claim id from the debit id,
so that every retry of one exchange is the same debit and the same claim:

    debit(id) --ok--> coupon_claim (claim id from the debit id) --refused--> refund(id)

- a refused debit (not enough points) issues nothing;
- a debit whose reply was lost is sent again with the same id (the client
  retries, the service answers the first result): one debit, one claim;
- a claim refused after the debit (sold out meanwhile) refunds the debit;
- an exchange answered once is answered again from the claim's remembered
  answer, without calling the service.
"""

import hashlib
from dataclasses import dataclass
from typing import Literal, Protocol

DebitStatus = Literal["debited", "refused", "refunded", "unavailable"]


@dataclass(frozen=True)
class Debit:
    status: DebitStatus
    reason: str = ""
    """the service's reason for a refusal (e.g. insufficient_points)"""


class PointsLedger(Protocol):
    """The points service as the engine needs it (stampede/durable/points_client.py)."""

    async def debit(self, debit_id: str, user: str, points: int, campaign_id: str,
                    sku: str) -> Debit:
        """Debit once per debit_id; the same id again answers the first result."""
        ...

    async def refund(self, debit_id: str) -> Debit:
        """Give a debit back once (idempotent); 'refunded' or 'unavailable'."""
        ...

    async def close(self) -> None:
        ...


def debit_id(cid: str, user: str, idempotency_key: str, sku: str, qty: int) -> str:
    """One exchange's debit id: the same for every retry of the claim. The body is in
    it: the same key with another SKU or qty is another debit (refused by the claim's
    idempotency check, and refunded), never the first one's."""
    text = f"{cid}\n{user}\n{idempotency_key}\n{sku}\n{qty}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def claim_id(cid: str, debit: str) -> str:
    """The exchange's claim id (a claim id that exists is answered again)."""
    return f"{cid}.{debit[:20]}"
