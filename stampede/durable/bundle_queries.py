"""Presales: the admin lookup of a bundle claim by its id (stampede/durable/queries.py
looks up claims; a bundle's id is no row of `claims`, its lines are).

The lines carry their bundle's id (`claims.bundle_id`, from the bundle_held event that
holds them, or in an older store each line's claim_held); the bundle's bundle_held
event has a `claim_history` row under the bundle's id, which
gives its name and the order of its lines. The bundle is shown as GET /v1/claims/{id}
shows it: sku '', qty 1, the lines' sum as its price, its first line's status.
"""

from sqlalchemy import and_, or_, select

from stampede.durable.queries import MAX_HISTORY, ClaimLookup, ClaimRow, claim_row, event_row
from stampede.durable.store import Store
from stampede.durable.store import schema as t


async def bundle_record(store: Store, bundle_id: str) -> ClaimLookup | None:
    """The bundle claim `bundle_id` with its lines and every event that made them; None
    if no line was held for it."""
    c, h, e = t.claims.c, t.claim_history.c, t.events.c
    async with store.read() as conn:
        rows = [claim_row(r) for r in await conn.execute(
            select(t.claims).where(c.bundle_id == bundle_id))]
        if not rows:
            return None
        ids = [bundle_id, *(r.claim_id for r in rows)]
        made = select(t.events).join(
            t.claim_history, and_(h.campaign_id == e.campaign_id, h.seq == e.seq)
        ).where(or_(*(h.claim_id == i for i in ids))).order_by(e.seq).limit(MAX_HISTORY)
        history = [event_row(r) for r in await conn.execute(made)]
    held = next((x for x in history if x.type == "bundle_held"), None)
    order = str(held.fields.get("lines", "")).split(",") if held else []
    rows.sort(key=lambda r: (order.index(r.claim_id) if r.claim_id in order else len(order),
                             r.created_at, r.claim_id))
    first = rows[0]
    record = ClaimRow(claim_id=bundle_id, campaign_id=first.campaign_id, user=first.user,
                      sku="", qty=1, price=sum(r.price * r.qty for r in rows),
                      status=first.status, created_at=first.created_at,
                      expires_at=first.expires_at)
    name = str(held.fields.get("bundle", "")) if held else ""
    return ClaimLookup(record=record, history=history, bundle=name or None, lines=rows)
