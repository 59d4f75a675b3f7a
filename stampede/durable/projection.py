"""Fold events into the projections: campaigns, SKU counters, claims and their history.

Events are stored first (ON CONFLICT DO NOTHING on (campaign, seq)); then
each campaign's projections advance over the contiguous run of events after
`applied_seq`, in seq order. A duplicate is below `applied_seq` and ignored;
an early event waits in `events` until the gap before it fills. So any
delivery order folds to the same state, and no event is applied twice.
An event of a type this version does not know is stored and stops the run
the same way (see `_known`).
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stampede.domain.models import CampaignSpec, to_ms
from stampede.durable.coupon_projection import CouponFold
from stampede.durable.events import (
    CampaignDefined,
    CampaignPatched,
    ClaimCancelled,
    ClaimConfirmed,
    ClaimEvent,
    ClaimExpired,
    ClaimHeld,
    ClaimRefunded,
    ClaimTransferred,
    Event,
    StockAdjusted,
    TicketCheckedIn,
    Unknown,
    WaveReleased,
    from_row,
    to_row,
)
from stampede.durable.refund_projection import apply_to_sku, checkin_row, refund_row
from stampede.durable.store import schema as t
from stampede.durable.store.db import Store

log = logging.getLogger("stampede.projection")
_COUNTERS = ("released", "available", "held", "sold", "expired", "cancelled")
_PATCHABLE = ("state", "opens_ms", "closes_ms", "hold_ttl_ms", "per_user", "max_qty")
_spec_decoder = msgspec.json.Decoder(CampaignSpec)
_patch_decoder = msgspec.json.Decoder(dict[str, Any])
_SETTLED: dict[type[Event], str] = {ClaimConfirmed: "confirmed", ClaimExpired: "expired",
                                    ClaimCancelled: "cancelled"}
"""A settled claim's status (and the SKU counter it moves units to)."""


def new_sku(sku: str, price: int, per_user: int) -> dict[str, Any]:
    return {"sku": sku, "price": price, "per_user": per_user, **dict.fromkeys(_COUNTERS, 0)}


def spec_fields(spec: CampaignSpec) -> dict[str, Any]:
    """The campaign row fields a definition sets (as define_campaign.lua sets meta)."""
    per_user = spec.limits.per_user
    return {"name": spec.name, "opens_ms": to_ms(spec.opens_at),
            "closes_ms": to_ms(spec.closes_at), "hold_ttl_ms": spec.hold_ttl_s * 1000,
            "per_user": -1 if per_user is None else per_user,
            "max_qty": spec.limits.max_per_claim, "state": "active"}


def spec_skus(spec: CampaignSpec) -> dict[str, dict[str, Any]]:
    return {s.sku: new_sku(s.sku, s.price, -1 if s.per_user is None else s.per_user)
            for s in spec.skus}


@dataclass
class Fold:
    """One campaign's projections in memory while a run of events is applied."""
    campaign: dict[str, Any]
    skus: dict[str, dict[str, Any]]
    new_claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: dict[str, tuple[str, int]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    coupons: CouponFold = field(default_factory=CouponFold)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    checkins: list[dict[str, Any]] = field(default_factory=list)

    def sku(self, name: str) -> dict[str, Any]:
        # A SKU unknown to the definition cannot come from our scripts; keep
        # its counts anyway rather than lose them (the audit will show it).
        found = self.skus.get(name)
        if found is None:
            found = self.skus[name] = new_sku(name, 0, -1)
        return found

    def apply(self, ev: Event) -> None:
        c = self.campaign
        c["epoch"] = max(c["epoch"], ev.epoch)
        match ev:  # claims first: nearly every event is one
            case ClaimHeld():
                self._held(ev)
            case ClaimConfirmed() | ClaimExpired() | ClaimCancelled():
                self._settled(ev, _SETTLED[type(ev)])
            case CampaignDefined(spec=spec_json):
                spec = _spec_decoder.decode(spec_json)
                c.update(spec_fields(spec), spec=spec_json, defined_seq=ev.seq)
                self.skus = spec_skus(spec)
            case WaveReleased(sku=sku, qty=n) | StockAdjusted(sku=sku, delta=n):
                s = self.sku(sku)
                s["available"] += n
                s["released"] += n
            case CampaignPatched(after=after):
                for name, value in _patch_decoder.decode(after).items():
                    if name.startswith("lim:"):
                        self.sku(name[4:])["per_user"] = int(value)
                    elif name in _PATCHABLE:
                        c[name] = value if name == "state" else int(value)
            case ClaimRefunded():
                self._refunded(ev)
            case TicketCheckedIn():
                self.checkins.append(checkin_row(ev))
            case ClaimTransferred():
                self._transferred(ev)
            case _:
                self.coupons.apply(ev)

    def _held(self, ev: ClaimHeld) -> None:
        s = self.sku(ev.sku)
        s["available"] -= ev.qty
        s["held"] += ev.qty
        self.new_claims[ev.claim] = {
            "claim_id": ev.claim, "campaign_id": ev.campaign_id, "user_id": ev.user,
            "sku": ev.sku, "qty": ev.qty, "price": ev.price, "status": "held",
            "deadline_ms": ev.deadline, "created_ms": ev.ts, "updated_seq": ev.seq,
            "idem_key": ev.idem, "fingerprint": ev.fp}
        self._history(ev, "held")

    def _settled(self, ev: ClaimEvent, status: str) -> None:
        s = self.sku(ev.sku)
        s["held"] -= ev.qty
        if status == "confirmed":
            s["sold"] += ev.qty
        else:
            s["available"] += ev.qty
            s[status] += ev.qty  # expired or cancelled
        if ev.claim in self.new_claims:
            self.new_claims[ev.claim].update(status=status, updated_seq=ev.seq)
        else:
            self.status[ev.claim] = (status, ev.seq)
        self._history(ev, status)

    def _refunded(self, ev: ClaimRefunded) -> None:
        apply_to_sku(self.sku(ev.sku), ev)
        self.refunds.append(refund_row(ev))
        if ev.left == 0:
            if ev.claim in self.new_claims:
                self.new_claims[ev.claim].update(status="refunded", updated_seq=ev.seq)
            else:
                self.status[ev.claim] = ("refunded", ev.seq)
            self.history.append({"campaign_id": ev.campaign_id, "seq": ev.seq,
                                 "claim_id": ev.claim, "status": "refunded", "ts": ev.ts})

    def _transferred(self, ev: ClaimTransferred) -> None:
        """The old claim is transferred; the recipient's is a new sold claim (SKU
        counters stay: the units stay sold). A one-ticket transfer leaves the old
        claim confirmed with its other tickets."""
        if ev.ticket == 0 and ev.claim in self.new_claims:
            self.new_claims[ev.claim].update(status="transferred", updated_seq=ev.seq)
        elif ev.ticket == 0:
            self.status[ev.claim] = ("transferred", ev.seq)
        self.new_claims[ev.new_claim] = {
            "claim_id": ev.new_claim, "campaign_id": ev.campaign_id, "user_id": ev.user,
            "sku": ev.sku, "qty": ev.qty, "price": ev.price, "status": "confirmed",
            "deadline_ms": ev.deadline, "created_ms": ev.created, "updated_seq": ev.seq,
            "idem_key": None, "fingerprint": None}
        if not ev.ticket:
            self.history.append({"campaign_id": ev.campaign_id, "seq": ev.seq,
                                 "claim_id": ev.claim, "status": "transferred", "ts": ev.ts})

    def _history(self, ev: ClaimEvent, status: str) -> None:
        self.history.append({"campaign_id": ev.campaign_id, "seq": ev.seq, "claim_id": ev.claim,
                             "status": status, "ts": ev.ts})


_compiled: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}


async def insert_ignore_many(conn: AsyncConnection, store: Store, table: Table,
                             rows: Sequence[dict[str, Any]]) -> None:
    """Bulk INSERT ... ON CONFLICT DO NOTHING straight through the driver.

    The statement is compiled once per backend; rows go to the driver's
    executemany as tuples, skipping SQLAlchemy's per-row parameter handling,
    which was a third of the persister's time per event.
    """
    key = (store.dialect, table.name)
    if key not in _compiled:
        compiled = store.insert_ignore(table).compile(dialect=conn.dialect,
                                                      column_keys=list(rows[0]))
        _compiled[key] = (str(compiled), tuple(compiled.positiontup or ()))
    sql, order = _compiled[key]
    await conn.exec_driver_sql(sql, [tuple(r[k] for k in order) for r in rows])


async def store_events(conn: AsyncConnection, store: Store, events: Sequence[Event]) -> None:
    """Insert events (duplicates ignored) and advance the projections they complete."""
    if not events:
        return
    await insert_ignore_many(conn, store, t.events, [to_row(e) for e in events])
    by_campaign: dict[str, list[Event]] = {}
    for e in events:
        by_campaign.setdefault(e.campaign_id, []).append(e)
    for cid in sorted(by_campaign):  # one lock order for all writers: no deadlocks
        await _advance(conn, store, cid, by_campaign[cid])


async def lock_campaign(conn: AsyncConnection, store: Store, cid: str) -> Any:
    """The campaign's row, created if new, locked for this transaction."""
    await conn.execute(store.insert_ignore(t.campaigns).values(
        campaign_id=cid, name="", spec="", state="active", opens_ms=0, closes_ms=0,
        hold_ttl_ms=0, per_user=-1, max_qty=1, epoch=0, defined_seq=0, applied_seq=0,
        max_seq=0))
    query = select(t.campaigns).where(t.campaigns.c.campaign_id == cid).with_for_update()
    return (await conn.execute(query)).one()


async def _advance(conn: AsyncConnection, store: Store, cid: str, batch: list[Event]) -> None:
    row = await lock_campaign(conn, store, cid)
    applied = row.applied_seq
    fresh = sorted({e.seq: e for e in batch if e.seq > applied}.values(), key=lambda e: e.seq)
    max_seq = max(row.max_seq, *(e.seq for e in batch))
    if _contiguous(fresh, applied) and (not fresh or fresh[-1].seq >= row.max_seq):
        run = fresh
    else:  # out of order: read back what is stored after applied_seq
        query = select(t.events).where(t.events.c.campaign_id == cid,
                                       t.events.c.seq > applied).order_by(t.events.c.seq)
        run = _prefix([from_row(r) for r in await conn.execute(query)], applied)
    run = _known(cid, run)
    campaign = dict(row._mapping)
    campaign["max_seq"] = max_seq
    if run:
        skus = {r.sku: dict(r._mapping) for r in await conn.execute(
            select(t.skus).where(t.skus.c.campaign_id == cid))}
        fold = Fold(campaign, skus)
        for ev in run:
            fold.apply(ev)
        campaign["applied_seq"] = run[-1].seq
        await _flush(conn, store, cid, fold)
    await conn.execute(update(t.campaigns).where(t.campaigns.c.campaign_id == cid)
                       .values({k: v for k, v in campaign.items() if k != "campaign_id"}))


def _contiguous(events: Sequence[Event], after: int) -> bool:
    return all(e.seq == after + i + 1 for i, e in enumerate(events))


def _prefix(events: Iterable[Event], after: int) -> list[Event]:
    run: list[Event] = []
    for e in events:
        if e.seq != after + len(run) + 1:
            break
        run.append(e)
    return run


def _known(cid: str, run: list[Event]) -> list[Event]:
    """The run up to an event of a type this version does not know, which stays stored:
    projections wait there, as behind a gap, until a version that knows it folds on."""
    for i, e in enumerate(run):
        if isinstance(e, Unknown):
            log.warning("campaign %s: event %d is of unknown type %r; projections wait before "
                        "it for a version that knows it", cid, e.seq, e.name)
            return run[:i]
    return run


_set_status = (update(t.claims).where(t.claims.c.claim_id == bindparam("b_claim"))
               .values(status=bindparam("b_status"), updated_seq=bindparam("b_seq")))


async def _flush(conn: AsyncConnection, store: Store, cid: str, fold: Fold) -> None:
    if fold.new_claims:
        await insert_ignore_many(conn, store, t.claims, list(fold.new_claims.values()))
    if fold.status:
        await conn.execute(_set_status, [{"b_claim": k, "b_status": s, "b_seq": q}
                                         for k, (s, q) in fold.status.items()])
    if fold.history:
        await insert_ignore_many(conn, store, t.claim_history, fold.history)
    if fold.refunds:
        await insert_ignore_many(conn, store, t.refunds, fold.refunds)
    if fold.checkins:
        await insert_ignore_many(conn, store, t.checkins, fold.checkins)

    async def insert_many(table: Table, rows: Sequence[dict[str, Any]]) -> None:
        await insert_ignore_many(conn, store, table, rows)
    await fold.coupons.flush(conn, insert_many)
    await conn.execute(delete(t.skus).where(t.skus.c.campaign_id == cid))
    if fold.skus:
        await conn.execute(t.skus.insert(), [{**s, "campaign_id": cid}
                                             for s in fold.skus.values()])
