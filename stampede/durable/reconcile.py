"""Compare each campaign's Redis counters with the store's, at the same event.

The store is behind Redis by the persister's lag, so the comparison is made
at the store's `applied_seq` S: one MULTI reads Redis's counters together
with the stream entries after S, whose effects are taken back out of the
counters. What remains must equal the store's SKU rows exactly; any
difference is reported as a metric and a log line (and fixed by nobody here:
`stampede recover` is the operator's tool).
"""

import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select

from stampede.durable.events import (
    BundleHeld,
    CampaignDefined,
    ClaimCancelled,
    ClaimConfirmed,
    ClaimExpired,
    ClaimHeld,
    Event,
    StockAdjusted,
    Unknown,
    WaveReleased,
    from_entry,
)
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.metrics import RECONCILE_DIFFERENCE
from stampede.state import keys

log = logging.getLogger("stampede.reconcile")
_COUNTERS = {"a": "available", "h": "held", "s": "sold", "r": "released"}
_MAX_BEHIND = 200_000  # stream entries to read back before giving up on a round


@dataclass(frozen=True)
class Difference:
    campaign_id: str
    sku: str
    counter: str
    redis: int
    store: int


async def reconcile_campaign(redis: "Redis", store: Store, cid: str) -> list[Difference] | None:
    """The differences for one campaign; None when this round cannot compare."""
    async with store.read() as conn:
        row = (await conn.execute(select(t.campaigns).where(
            t.campaigns.c.campaign_id == cid))).one_or_none()
        stored = {r.sku: r for r in await conn.execute(
            select(t.skus).where(t.skus.c.campaign_id == cid))}
    if row is None or row.applied_seq == 0:
        return None
    at = row.applied_seq
    ks = keys.campaign_keys(cid)
    count = 1000
    while count <= _MAX_BEHIND:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(ks.stock)
            pipe.hget(ks.meta, "evseq")
            pipe.xrevrange(ks.events, count=count)
            stock, evseq, entries = await pipe.execute()
        evseq = int(evseq or 0)
        if evseq < at:  # Redis lost events the store has
            return [Difference(cid, "*", "events", evseq, at)]
        after = [from_entry(cid, eid, f) for eid, f in entries if int(f["seq"]) > at]
        if len(after) == evseq - at:
            return _compare(cid, stock, after, stored)
        if len(entries) < count:  # trimmed past S: not comparable now
            return None
        count = (evseq - at) * 2 + 100
    return None


def _compare(cid: str, stock: dict[str, str], after: list[Event],
             stored: dict[str, Any]) -> list[Difference] | None:
    counters = {k: int(v) for k, v in stock.items() if k.rsplit(".", 1)[-1] in _COUNTERS}
    for ev in after:  # take the effect of each later event back out
        match ev:
            case CampaignDefined():
                return None  # a redefinition reset everything: compare next round
            case WaveReleased(sku=sku, qty=n) | StockAdjusted(sku=sku, delta=n):
                _add(counters, sku, a=-n, r=-n)
            case ClaimHeld(sku=sku, qty=n):
                _add(counters, sku, a=n, h=-n)
            case BundleHeld():  # its lines (older shape: none, claim_held each)
                for line in ev.held_lines():
                    _add(counters, line.sku, a=line.qty, h=-line.qty)
            case ClaimConfirmed(sku=sku, qty=n):
                _add(counters, sku, h=n, s=-n)
            case ClaimCancelled(sku=sku, qty=n) | ClaimExpired(sku=sku, qty=n):
                _add(counters, sku, h=n, a=-n)
            case Unknown():
                return None  # its effect on the counters is unknown here
    diffs = []
    skus = {k.rsplit(".", 1)[0] for k in counters} | set(stored)
    for sku in sorted(skus):
        row = stored.get(sku)
        for short, name in _COUNTERS.items():
            mine = counters.get(f"{sku}.{short}", 0)
            theirs = getattr(row, name) if row is not None else 0
            if mine != theirs:
                diffs.append(Difference(cid, sku, name, mine, theirs))
    return diffs


def _add(counters: dict[str, int], sku: str, **by: int) -> None:
    for short, n in by.items():
        key = f"{sku}.{short}"
        counters[key] = counters.get(key, 0) + n


async def reconcile(redis: "Redis", store: Store) -> list[Difference]:
    """Compare every campaign; set the metric and log each difference."""
    async with store.read() as conn:
        cids = [r[0] for r in await conn.execute(select(t.campaigns.c.campaign_id))]
    found: list[Difference] = []
    for cid in sorted(cids):
        diffs = await reconcile_campaign(redis, store, cid)
        if diffs is None:
            continue
        for d in diffs:
            log.warning("reconcile: campaign %s sku %s %s: redis %d, store %d", d.campaign_id,
                        d.sku, d.counter, d.redis, d.store)
        bad = {(d.sku, d.counter): d.redis - d.store for d in diffs}
        async with store.read() as conn:
            skus = [r[0] for r in await conn.execute(
                select(t.skus.c.sku).where(t.skus.c.campaign_id == cid))]
        for sku in skus:
            for name in _COUNTERS.values():
                RECONCILE_DIFFERENCE.labels(cid, sku, name).set(bad.get((sku, name), 0))
        found += diffs
    return found
