"""Folding refunds (claim_refunded) into the projections: SKU counters, claims, refunds;
and ticket check-ins (ticket_checked_in) into the checkins table.

A refund takes units out of `sold`; the campaign's policy put them back in
`available` (restock: any waitlist offer they made follows as its own
claim_held) or withdrew them from `released` (retire), so available + held
+ sold = released holds either way. A claim is `refunded` once no unit is left.
"""

from typing import Any

from stampede.durable.events import ClaimRefunded, TicketCheckedIn


def refund_row(ev: ClaimRefunded) -> dict[str, Any]:
    return {"campaign_id": ev.campaign_id, "seq": ev.seq, "claim_id": ev.claim,
            "user_id": ev.user, "sku": ev.sku, "qty": ev.qty, "amount": ev.amount,
            "left_qty": ev.left, "units_to": ev.to, "actor": ev.actor, "reason": ev.reason,
            "buyer": int(ev.buyer), "idem_key": ev.idem, "fingerprint": ev.fp, "ts": ev.ts,
            "tickets": ev.tickets}


def checkin_row(ev: TicketCheckedIn) -> dict[str, Any]:
    return {"campaign_id": ev.campaign_id, "seq": ev.seq, "ticket_id": ev.ticket,
            "claim_id": ev.claim, "user_id": ev.user, "sku": ev.sku, "gate": ev.gate,
            "scanner": ev.scanner, "scanned_ms": ev.at, "ts": ev.ts}


def apply_to_sku(sku: dict[str, Any], ev: ClaimRefunded) -> None:
    sku["sold"] -= ev.qty
    if ev.to == "retire":
        sku["released"] -= ev.qty
    else:
        sku["available"] += ev.qty
