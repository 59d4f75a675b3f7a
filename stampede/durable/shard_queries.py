"""Admin lookups of a sharded campaign: every shard's stored events, as one listing.

Each shard is stored as a campaign of its own (`<id>`, `<id>:s<k>`), each with its own
contiguous `seq`. The campaign's event listing merges them in time order (ts, then
shard, then seq), each row naming the campaign and its shard. Paging stays exact: a
shard's events are read in seq order (its primary key), so what one page showed of a
shard is a prefix of it, and the cursor holds, per shard, the last seq shown. No event
is shown twice or skipped, whatever the persister writes between pages (a shard's
events are stored in seq order).
"""

import heapq
from collections.abc import Sequence

from sqlalchemy import or_, select

from stampede.durable import queries as q
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys

KIND = "events-shards"
_ALWAYS = q.Window()


async def shard_ids(store: Store, cid: str) -> list[str]:
    """The stored ids of a campaign's shards, by shard number ([cid] if not sharded)."""
    c = t.campaigns.c
    async with store.read() as conn:
        found = [r[0] for r in await conn.execute(select(c.campaign_id).where(or_(
            c.campaign_id == cid, c.campaign_id.startswith(f"{cid}:s", autoescape=True))))]
    found = [i for i in found if keys.shard_of_id(i)[0] == cid]
    return sorted(found, key=lambda i: keys.shard_of_id(i)[1]) or [cid]


def tagged(row: q.EventRow) -> q.EventRow:
    """The row as the campaign's: its id the campaign's, its shard named."""
    base, k = keys.shard_of_id(row.campaign_id)
    row.campaign_id, row.shard = base, k
    return row


async def campaign_events(store: Store, ids: Sequence[str], types: Sequence[str] = (),
                          window: q.Window = _ALWAYS, cursor: str | None = None,
                          limit: int = q.DEFAULT_LIMIT) -> q.EventPage:
    """Every shard's events, merged in time order (see the module's docstring)."""
    q.check_limit(limit)
    after = [0] * len(ids) if cursor is None else \
        list(q.decode_cursor(KIND, cursor, [int] * len(ids)))
    ev = t.events.c
    per_shard: list[list[q.EventRow]] = []
    async with store.read() as conn:
        for scid, seq in zip(ids, after, strict=True):
            stmt = select(t.events).where(ev.campaign_id == scid, ev.seq > seq,
                                          *window.where(ev.ts))
            if types:
                stmt = stmt.where(ev.type.in_(types))
            rows = await conn.execute(stmt.order_by(ev.seq).limit(limit + 1))
            per_shard.append([q.event_row(r) for r in rows])
    order = {scid: k for k, scid in enumerate(ids)}
    merged = heapq.merge(*per_shard, key=lambda r: (r.at, order[r.campaign_id], r.seq))
    items: list[q.EventRow] = []
    for row in merged:
        if len(items) == limit:
            break
        after[order[row.campaign_id]] = row.seq
        items.append(row)
    more = sum(len(rows) for rows in per_shard) > len(items)
    return q.EventPage(items=[tagged(r) for r in items],
                       next_cursor=q.encode_cursor(KIND, after) if more else None)
