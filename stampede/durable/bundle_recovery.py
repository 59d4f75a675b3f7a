"""Presales: bundle claims in a rebuild (recovery.py). Their lines are claims like any
other in the store; what the store's rows do not say is which lines make a bundle, so
the `bundle_held` events give back the users-hash marks ("~b|<bundle>", "~l|<line>")
and the first answers remembered under the bundle claims' Idempotency-Keys."""

from typing import Any

from stampede.domain.models import ClaimLineView, ClaimView, from_ms
from stampede.durable.events import BundleHeld
from stampede.state import records
from stampede.state.records import ClaimAnswerRecord


def marks(bundles: dict[str, BundleHeld]) -> dict[str, str]:
    """The users-hash fields that link each bundle and its lines."""
    out: dict[str, str] = {}
    for claim, ev in bundles.items():
        out[f"~b|{claim}"] = f"{ev.bundle}|{ev.lines}"
        for line in ev.lines.split(","):
            out[f"~l|{line}"] = claim
    return out


def queue_answers(pipe: Any, bundles: dict[str, BundleHeld], now: int,
                  idem_ttl_ms: int) -> int:
    """The first answers of bundle claims still within the idempotency TTL, as
    claim_bundle.lua remembered them."""
    n = 0
    for claim, ev in bundles.items():
        ttl = ev.ts + idem_ttl_ms - now
        if ev.idem and ttl > 0:
            pipe.set(ev.idem, records.CLAIM_ANSWER.encode(ClaimAnswerRecord(
                fingerprint=ev.fp or "", code=0, claim_id=claim, deadline=ev.deadline,
                price=ev.price, created=ev.ts)), px=ttl)
            n += 1
    return n


def view(cid: str, ev: BundleHeld, rows: dict[str, Any]) -> ClaimView | None:
    """A bundle claim as the API shows it, from its lines' stored rows."""
    lines = [rows[i] for i in ev.lines.split(",") if i in rows]
    if not lines:
        return None
    first = lines[0]
    return ClaimView(
        claim_id=ev.claim, campaign_id=cid, sku="", qty=1, status=first.status,
        expires_at=from_ms(first.deadline_ms), price=sum(c.price * c.qty for c in lines),
        created_at=from_ms(first.created_ms), bundle=ev.bundle or None,
        lines=[ClaimLineView(claim_id=c.claim_id, sku=c.sku, qty=c.qty, price=c.price,
                             status=c.status) for c in lines])
