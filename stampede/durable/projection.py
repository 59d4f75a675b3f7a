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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from stampede.domain.models import CampaignSpec, to_ms
from stampede.durable.coupon_projection import CouponFold
from stampede.durable.events import (
    EVENT_COLUMNS,
    BundleHeld,
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
    row_of,
)
from stampede.durable.refund_projection import apply_to_sku, checkin_row, refund_row
from stampede.durable.store import schema as t
from stampede.durable.store.db import Store
from stampede.durable.store.sqlite_batch import SqliteBatch

log = logging.getLogger("stampede.projection")
_COUNTERS = ("released", "available", "held", "sold", "expired", "cancelled")
_PATCHABLE = ("state", "opens_ms", "closes_ms", "hold_ttl_ms", "per_user", "max_qty")
_spec_decoder = msgspec.json.Decoder(CampaignSpec)
_patch_decoder = msgspec.json.Decoder(dict[str, Any])
CLAIM_COLUMNS = ("claim_id", "campaign_id", "user_id", "sku", "qty", "price", "status",
                 "deadline_ms", "created_ms", "updated_seq", "idem_key", "fingerprint",
                 "bundle_id")
"""The `claims` columns of Fold.new_claims' rows, in order."""
_STATUS, _UPDATED_SEQ = CLAIM_COLUMNS.index("status"), CLAIM_COLUMNS.index("updated_seq")
HISTORY_COLUMNS = ("campaign_id", "seq", "claim_id", "status", "ts")
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
    new_claims: dict[str, list[Any]] = field(default_factory=dict)
    """Claims made in this run: rows in CLAIM_COLUMNS order (a list: a later event
    of the same run changes its status in place)."""
    status: dict[str, tuple[str, int]] = field(default_factory=dict)
    history: list[tuple[str, int, str, str, int]] = field(default_factory=list)
    """claim_history rows: (campaign_id, seq, claim_id, status, ts)."""
    redefined: bool = False
    """A definition in this run replaced the SKUs: the stored ones go first."""
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
                self.redefined = True
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
            case BundleHeld():  # the bundle's own history row: the lookup finds it by id
                for line in ev.held_lines():  # (none in the older shape: claim_held each)
                    self._held(line, history=False)  # (a seq has one history row)
                self.history.append((ev.campaign_id, ev.seq, ev.claim, "held", ev.ts))
            case TicketCheckedIn():
                self.checkins.append(checkin_row(ev))
            case ClaimTransferred():
                self._transferred(ev)
            case _:
                self.coupons.apply(ev)

    def _held(self, ev: ClaimHeld, history: bool = True) -> None:
        s = self.sku(ev.sku)
        s["available"] -= ev.qty
        s["held"] += ev.qty
        self.new_claims[ev.claim] = [ev.claim, ev.campaign_id, ev.user, ev.sku, ev.qty,
                                     ev.price, "held", ev.deadline, ev.ts, ev.seq, ev.idem,
                                     ev.fp, ev.bundle or None]
        if history:
            self.history.append((ev.campaign_id, ev.seq, ev.claim, "held", ev.ts))

    def _settled(self, ev: ClaimEvent, status: str) -> None:
        s = self.sku(ev.sku)
        s["held"] -= ev.qty
        if status == "confirmed":
            s["sold"] += ev.qty
        else:
            s["available"] += ev.qty
            s[status] += ev.qty  # expired or cancelled
        self._set_status(ev.claim, status, ev.seq)
        self.history.append((ev.campaign_id, ev.seq, ev.claim, status, ev.ts))

    def _refunded(self, ev: ClaimRefunded) -> None:
        apply_to_sku(self.sku(ev.sku), ev)
        self.refunds.append(refund_row(ev))
        if ev.left == 0:
            self._set_status(ev.claim, "refunded", ev.seq)
            self.history.append((ev.campaign_id, ev.seq, ev.claim, "refunded", ev.ts))

    def _transferred(self, ev: ClaimTransferred) -> None:
        """The old claim is transferred; the recipient's is a new sold claim (SKU
        counters stay: the units stay sold). A one-ticket transfer leaves the old
        claim confirmed with its other tickets."""
        if ev.ticket == 0:
            self._set_status(ev.claim, "transferred", ev.seq)
        self.new_claims[ev.new_claim] = [ev.new_claim, ev.campaign_id, ev.user, ev.sku, ev.qty,
                                         ev.price, "confirmed", ev.deadline, ev.created, ev.seq,
                                         None, None, None]
        if ev.ticket == 0:
            self.history.append((ev.campaign_id, ev.seq, ev.claim, "transferred", ev.ts))

    def _set_status(self, claim: str, status: str, seq: int) -> None:
        row = self.new_claims.get(claim)
        if row is None:
            self.status[claim] = (status, seq)
        else:
            row[_STATUS], row[_UPDATED_SEQ] = status, seq


_compiled: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}


def _sql(conn: "Conn", name: str, build: Callable[[], Any],
         columns: Sequence[str] | None = None) -> tuple[str, tuple[str, ...]]:
    """A statement compiled once per backend: its SQL and its parameters' order.

    The persister runs the same few statements every batch; sent as the driver's
    own SQL they skip SQLAlchemy's per-call cache key and parameter handling,
    which cost more than the statements themselves on small batches."""
    key = (conn.dialect.name, name)
    found = _compiled.get(key)
    if found is None:
        compiled = build().compile(dialect=conn.dialect,
                                   column_keys=list(columns) if columns else None)
        found = _compiled[key] = (str(compiled), tuple(compiled.positiontup or ()))
    return found


Conn = AsyncConnection | SqliteBatch
"""A transaction's connection; on SQLite its writes are queued and sent together."""


async def _write(conn: Conn, sql: str, params: Any) -> None:
    """Driver SQL: a tuple of parameters, or a list of them (executemany)."""
    if isinstance(conn, SqliteBatch):
        conn.write(sql, params)
    else:
        await conn.exec_driver_sql(sql, params)


async def _read(conn: Conn, sql: str, params: Any) -> list[dict[str, Any]]:
    if isinstance(conn, SqliteBatch):
        return await conn.read(sql, params)
    return [dict(r._mapping) for r in await conn.exec_driver_sql(sql, params)]


async def _direct(conn: Conn) -> AsyncConnection:
    """The connection itself, for a Core statement: the queued writes go first."""
    if isinstance(conn, SqliteBatch):
        await conn.flush()
        return conn.conn
    return conn


async def _execute(conn: Conn, name: str, build: Callable[[], Any],
                   params: Sequence[dict[str, Any]]) -> None:
    sql, order = _sql(conn, name, build)
    rows = [tuple(p[k] for k in order) for p in params]
    await _write(conn, sql, rows if len(rows) != 1 else rows[0])


async def insert_ignore_many(conn: Conn, store: Store, table: Table,
                             rows: Sequence[dict[str, Any]]) -> None:
    """Bulk INSERT ... ON CONFLICT DO NOTHING of dict rows, straight through the driver."""
    columns = tuple(rows[0])
    await insert_ignore_rows(conn, store, table, columns,
                             [tuple(r[k] for k in columns) for r in rows])


async def insert_ignore_rows(conn: Conn, store: Store, table: Table,
                             columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """Bulk INSERT ... ON CONFLICT DO NOTHING of tuples in `columns` order: no per-row
    dicts. SQLite: one executemany. PostgreSQL: one statement whose parameters are
    the columns as arrays (unnest), rather than a bind and execute per row."""
    if not store.is_sqlite:
        key = (conn.dialect.name, f"unnest {table.name} {columns}")
        if key not in _compiled:
            _compiled[key] = (_unnest_insert(table, columns, conn.dialect), columns)
        await _write(conn, _compiled[key][0], tuple(zip(*rows, strict=True)))
        return
    sql, order = _sql(conn, f"insert {table.name} {columns}",
                      lambda: store.insert_ignore(table), columns)
    if order != columns:  # the compiler lists the table's order; follow it
        at = [columns.index(k) for k in order]
        rows = [tuple(r[i] for i in at) for r in rows]
    await _write(conn, sql, rows)


def _unnest_insert(table: Table, columns: tuple[str, ...], dialect: Dialect) -> str:
    arrays = ", ".join(f"${i}::{table.c[name].type.compile(dialect=dialect)}[]"
                       for i, name in enumerate(columns, 1))
    return (f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT DO NOTHING")


async def store_events(conn: AsyncConnection, store: Store, events: Sequence[Event]) -> None:
    """Insert events (duplicates ignored) and advance the projections they complete."""
    if not events:
        return
    # SQLite: the statements go to the driver's thread a few at a time, not one by one.
    batch: Conn = SqliteBatch(conn) if store.is_sqlite else conn
    await insert_ignore_rows(batch, store, t.events, EVENT_COLUMNS, [row_of(e) for e in events])
    by_campaign: dict[str, list[Event]] = {}
    for e in events:
        by_campaign.setdefault(e.campaign_id, []).append(e)
    for cid in sorted(by_campaign):  # one lock order for all writers: no deadlocks
        await _advance(batch, store, cid, by_campaign[cid])
    if isinstance(batch, SqliteBatch):
        await batch.flush()


def _select_campaign() -> Any:
    return (select(t.campaigns).where(t.campaigns.c.campaign_id == bindparam("b_cid"))
            .with_for_update())


async def lock_campaign(conn: Conn, store: Store, cid: str) -> dict[str, Any]:
    """The campaign's row, created if new, locked for this transaction."""
    sql, _ = _sql(conn, "lock campaign", _select_campaign)
    rows = await _read(conn, sql, (cid,))
    if not rows:  # the campaign's first events: make its row, then lock it
        await (await _direct(conn)).execute(store.insert_ignore(t.campaigns).values(
            campaign_id=cid, name="", spec="", state="active", opens_ms=0, closes_ms=0,
            hold_ttl_ms=0, per_user=-1, max_qty=1, epoch=0, defined_seq=0, applied_seq=0,
            max_seq=0))
        rows = await _read(conn, sql, (cid,))
    (row,) = rows
    return row


def _select_skus() -> Any:
    return select(t.skus).where(t.skus.c.campaign_id == bindparam("b_cid"))


async def _advance(conn: Conn, store: Store, cid: str, batch: list[Event]) -> None:
    campaign = await lock_campaign(conn, store, cid)
    applied, stored_max = campaign["applied_seq"], campaign["max_seq"]
    fresh = sorted({e.seq: e for e in batch if e.seq > applied}.values(), key=lambda e: e.seq)
    max_seq = max(stored_max, *(e.seq for e in batch))
    if _contiguous(fresh, applied) and (not fresh or fresh[-1].seq >= stored_max):
        run = fresh
    else:  # out of order: read back what is stored after applied_seq
        query = select(t.events).where(t.events.c.campaign_id == cid,
                                       t.events.c.seq > applied).order_by(t.events.c.seq)
        run = _prefix([from_row(r) for r in await (await _direct(conn)).execute(query)],
                      applied)
    run = _known(cid, run)
    campaign["max_seq"] = max_seq
    if run:
        sql, _ = _sql(conn, "select skus", _select_skus)
        skus = {r["sku"]: r for r in await _read(conn, sql, (cid,))}
        fold = Fold(campaign, skus)
        for ev in run:
            fold.apply(ev)
        campaign["applied_seq"] = run[-1].seq
        await _flush(conn, store, cid, fold)
    await _execute(conn, "update campaign", _update_campaign,
                   [{"b_cid": cid, **{f"b_{k}": v for k, v in campaign.items()
                                      if k != "campaign_id"}}])


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


_CAMPAIGN_FIELDS = tuple(c.name for c in t.campaigns.c if c.name != "campaign_id")
SKU_COLUMNS = ("campaign_id", "sku", "price", "per_user", *_COUNTERS)


def _update_campaign() -> Any:
    return (update(t.campaigns).where(t.campaigns.c.campaign_id == bindparam("b_cid"))
            .values({n: bindparam(f"b_{n}") for n in _CAMPAIGN_FIELDS}))


def _set_status() -> Any:
    return (update(t.claims).where(t.claims.c.claim_id == bindparam("b_claim"))
            .values(status=bindparam("b_status"), updated_seq=bindparam("b_seq")))


def _upsert_skus(store: Store) -> Callable[[], Any]:
    """Each SKU's row written whole, made if new: one statement per batch."""
    def build() -> Any:
        insert = (sqlite if store.is_sqlite else postgresql).insert(t.skus)
        return insert.on_conflict_do_update(
            index_elements=[t.skus.c.campaign_id, t.skus.c.sku],
            set_={n: insert.excluded[n] for n in SKU_COLUMNS[2:]})
    return build


async def _flush(conn: Conn, store: Store, cid: str, fold: Fold) -> None:
    if fold.new_claims:
        await insert_ignore_rows(conn, store, t.claims, CLAIM_COLUMNS,
                                 [tuple(r) for r in fold.new_claims.values()])
    if fold.status:
        await _execute(conn, "set status", _set_status,
                       [{"b_claim": k, "b_status": s, "b_seq": q}
                        for k, (s, q) in fold.status.items()])
    if fold.history:
        await insert_ignore_rows(conn, store, t.claim_history, HISTORY_COLUMNS, fold.history)
    if fold.refunds:
        await insert_ignore_many(conn, store, t.refunds, fold.refunds)
    if fold.checkins:
        await insert_ignore_many(conn, store, t.checkins, fold.checkins)

    if fold.coupons.pending:  # (Core statements: the queued writes go first)
        direct = await _direct(conn)

        async def insert_many(table: Table, rows: Sequence[dict[str, Any]]) -> None:
            await insert_ignore_many(direct, store, table, rows)
        await fold.coupons.flush(direct, insert_many)
    if fold.redefined:  # a SKU the new definition dropped must go
        await (await _direct(conn)).execute(delete(t.skus).where(t.skus.c.campaign_id == cid))
    if fold.skus:
        sql, order = _sql(conn, "upsert skus", _upsert_skus(store), SKU_COLUMNS)
        rows = [{**s, "campaign_id": cid} for s in fold.skus.values()]
        await _write(conn, sql, [tuple(r[k] for k in order) for r in rows])
