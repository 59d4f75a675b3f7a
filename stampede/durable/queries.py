"""Read-only queries of the durable store: listings, lookups and reports for operators,
support tools, merchants and users (the routes are stampede/api/lookups.py).

Every listing is a keyset page: rows in the order of an indexed key, the page
after a cursor being `key > (last key seen)`. A row written while someone pages
lands at its own place in that order, so no row is shown twice or skipped
because of it (claims are keyed by creation time, which a campaign's events
carry in order). The cursor is opaque to callers: the key of the last row,
tagged with the listing it belongs to. Each page is one short read-only
transaction (`Store.read`), so a reader never holds the persister up.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import msgspec
from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.sql import Select

from stampede.domain.models import from_ms
from stampede.durable import admin_audit
from stampede.durable import events as ev
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.errors import ValidationError
from stampede.state import keys

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DAY_MS = 86_400_000
T = TypeVar("T")


class QueryError(ValidationError):
    """A query parameter the store cannot answer: its message names the parameter."""


class AnyPage(Protocol):
    """A page of any listing (what an export walks)."""
    @property
    def items(self) -> Sequence[msgspec.Struct]: ...

    @property
    def next_cursor(self) -> str | None: ...


@dataclass(frozen=True)
class Window:
    """A half-open time range [since, until) in epoch ms; None is unbounded."""
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.since_ms is not None and self.until_ms is not None
                and self.since_ms >= self.until_ms):
            raise QueryError("since must be earlier than until")

    def where(self, column: Any) -> list[ColumnElement[bool]]:
        found = []
        if self.since_ms is not None:
            found.append(column >= self.since_ms)
        if self.until_ms is not None:
            found.append(column < self.until_ms)
        return found


Fetch = Callable[[str | None, int], Awaitable[AnyPage]]
"""One page of a listing, given its cursor and limit (what an export walks)."""


# -- cursors ----------------------------------------------------------------------

def encode_cursor(kind: str, key: Sequence[int | str]) -> str:
    raw = msgspec.json.encode([kind, *key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, types: Sequence[type]) -> tuple[Any, ...]:
    """The key a cursor of listing `kind` holds, or QueryError naming `cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        decoded = None
    if (not isinstance(decoded, list) or len(decoded) != len(types) + 1
            or decoded[0] != kind
            or not all(type(v) is ty and _in_range(v)
                       for v, ty in zip(decoded[1:], types, strict=True))):
        raise QueryError(f"cursor is not one this listing ({kind}) gave")
    return tuple(decoded[1:])


def _in_range(value: object) -> bool:
    """A key part the columns can hold (BIGINT; ids of at most 128 characters)."""
    if isinstance(value, int):
        return -(1 << 63) <= value < (1 << 63)
    return isinstance(value, str) and len(value) <= 128


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be 1 to {MAX_LIMIT}")
    return limit


def _after(columns: Sequence[Any], key: Sequence[Any], descending: bool) -> ColumnElement[bool]:
    """Rows strictly past `key` in the (lexicographic) order of `columns`: a row-value
    comparison, which both backends answer as one range scan of the index."""
    row: Any = columns[0] if len(columns) == 1 else tuple_(*columns)
    past: Any = key[0] if len(columns) == 1 else tuple_(*key)
    after: ColumnElement[bool] = row < past if descending else row > past
    return after


async def _page(store: Store, stmt: Select[Any], kind: str, columns: Sequence[Any],
                cursor: str | None, limit: int, item: Callable[[Any], T],
                descending: bool = False) -> tuple[list[T], str | None]:
    check_limit(limit)
    types = [int if c.type.python_type is int else str for c in columns]
    if cursor is not None:
        stmt = stmt.where(_after(columns, decode_cursor(kind, cursor, types), descending))
    order = [c.desc() if descending else c.asc() for c in columns]
    async with store.read() as conn:
        rows = list(await conn.execute(stmt.order_by(*order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        last = rows[-1]._mapping
        next_cursor = encode_cursor(kind, [last[c] for c in columns])
    return [item(r) for r in rows], next_cursor


def json_field(store: Store, name: str) -> Any:
    """The event body's `name` field (a filter on rows an index has already narrowed)."""
    if store.is_sqlite:
        return literal_column(f"json_extract(data, '$.{name}')")
    return literal_column(f"((data::json) ->> '{name}')")


# -- rows -------------------------------------------------------------------------

class ClaimRow(msgspec.Struct, kw_only=True):
    claim_id: str
    campaign_id: str
    user: str
    sku: str
    qty: int
    price: int
    status: str
    """held, confirmed, expired or cancelled"""
    created_at: datetime
    expires_at: datetime
    """The hold's deadline (meaningful while held)."""
    bundle_id: str | None = None
    """Presales: the bundle claim this claim is a line of (none: a claim alone)."""


def claim_row(row: Any) -> ClaimRow:
    return ClaimRow(claim_id=row.claim_id, campaign_id=keys.shard_of_id(row.campaign_id)[0],
                    user=row.user_id,
                    sku=row.sku, qty=row.qty, price=row.price, status=row.status,
                    created_at=from_ms(row.created_ms), expires_at=from_ms(row.deadline_ms),
                    bundle_id=row.bundle_id)


class EventRow(msgspec.Struct, kw_only=True):
    campaign_id: str
    seq: int
    type: str
    at: datetime
    actor: str | None = None
    """Who did it, for admin actions."""
    fields: dict[str, Any]
    """The event's own fields, as its script wrote them (values are strings)."""
    shard: int | None = None
    """A sharded campaign's: the shard the event happened on (0 to N-1); null for a
    campaign that is not split."""


def event_row(row: Any) -> EventRow:
    fields = msgspec.json.decode(row.data)
    if not isinstance(fields, dict):
        fields = {}
    actor = fields.get("actor")
    return EventRow(campaign_id=row.campaign_id, seq=row.seq, type=row.type, at=from_ms(row.ts),
                    actor=actor if isinstance(actor, str) else None, fields=fields)


class RedemptionRow(msgspec.Struct, kw_only=True):
    redemption_id: str
    campaign_id: str
    coupon_id: str
    merchant_id: str
    order_id: str
    order_amount: int
    discount: int
    status: str
    """redeemed or rolled_back"""
    redeemed_at: datetime
    rolled_back_at: datetime | None = None


def redemption_row(row: Any) -> RedemptionRow:
    rolled = row.rolled_back_ms
    return RedemptionRow(
        redemption_id=row.redemption_id, campaign_id=keys.shard_of_id(row.campaign_id)[0],
        coupon_id=row.coupon_id,
        merchant_id=row.merchant_id, order_id=row.order_id, order_amount=row.order_amount,
        discount=row.discount, status=row.status, redeemed_at=from_ms(row.redeemed_ms),
        rolled_back_at=None if rolled is None else from_ms(rolled))


class CouponRow(msgspec.Struct, kw_only=True):
    coupon_id: str
    campaign_id: str
    template: str
    user: str
    status: str
    uses: int
    uses_left: int
    face_value: int
    valid_from: datetime
    valid_to: datetime
    claim_id: str
    created_at: datetime


def coupon_row(row: Any) -> CouponRow:
    return CouponRow(coupon_id=row.coupon_id, campaign_id=keys.shard_of_id(row.campaign_id)[0],
                     template=row.template, user=row.user_id, status=row.status, uses=row.uses,
                     uses_left=row.uses_left, face_value=row.face_value,
                     valid_from=from_ms(row.valid_from_ms), valid_to=from_ms(row.valid_to_ms),
                     claim_id=row.claim_id, created_at=from_ms(row.created_ms))


class ClaimPage(msgspec.Struct, kw_only=True):
    items: list[ClaimRow]
    next_cursor: str | None
    """Pass as `cursor` for the next page; null on the last page."""


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventRow]
    next_cursor: str | None


class RedemptionPage(msgspec.Struct, kw_only=True):
    items: list[RedemptionRow]
    next_cursor: str | None


def columns_of(row_type: type[msgspec.Struct]) -> tuple[str, ...]:
    """An export's columns: the row type's fields, in order."""
    return tuple(f.name for f in msgspec.structs.fields(row_type))


# -- claims -----------------------------------------------------------------------

CLAIM_STATUSES = ("held", "confirmed", "expired", "cancelled")


@dataclass(frozen=True)
class ClaimFilter:
    campaign: str | None = None
    user: str | None = None
    sku: str | None = None
    status: str | None = None
    window: Window = Window()

    def where(self) -> list[ColumnElement[bool]]:
        c = t.claims.c
        found = self.window.where(c.created_ms)
        for column, value in ((c.user_id, self.user), (c.sku, self.sku),
                              (c.status, self.status)):
            if value is not None:
                found.append(column == value)
        if self.campaign is not None:  # a sharded campaign's claims are stored per shard
            found.append(or_(c.campaign_id == self.campaign,
                             c.campaign_id.startswith(f"{self.campaign}:s", autoescape=True)))
        return found


async def claims(store: Store, where: ClaimFilter, cursor: str | None = None,
                 limit: int = DEFAULT_LIMIT, newest_first: bool = False) -> ClaimPage:
    """Claims matching `where`, in creation order (or newest first)."""
    c = t.claims.c
    stmt = select(t.claims).where(*where.where())
    kind = "claims-desc" if newest_first else "claims"
    items, next_cursor = await _page(store, stmt, kind, [c.created_ms, c.claim_id], cursor,
                                     limit, claim_row, descending=newest_first)
    return ClaimPage(items=items, next_cursor=next_cursor)


# -- events -----------------------------------------------------------------------

async def campaign_events(store: Store, campaign: str, types: Sequence[str] = (),
                          window: Window = Window(), cursor: str | None = None,
                          limit: int = DEFAULT_LIMIT) -> EventPage:
    """A campaign's events in seq order, optionally of the given types and times."""
    c = t.events.c
    stmt = select(t.events).where(c.campaign_id == campaign, *window.where(c.ts))
    if types:
        stmt = stmt.where(c.type.in_(types))
    items, next_cursor = await _page(store, stmt, "events", [c.seq], cursor, limit, event_row)
    return EventPage(items=items, next_cursor=next_cursor)


AUDITED = ev.names(ev.CampaignDefined, ev.CampaignPatched, ev.StockAdjusted)
"""The events of admin actions (each carries its actor)."""


class AuditEntry(msgspec.Struct, kw_only=True):
    campaign_id: str
    seq: int
    type: str
    """campaign_defined, campaign_patched (state, schedule, limits), stock_adjusted, or
    admin_action: any other admin route that changes state (its `fields` name the
    route as `action`, the path as `target`, and the answer's `status`)"""
    at: datetime
    actor: str | None
    before: Any
    """What the action changed, as it was (null: nothing before it, or an event older
    than the field)."""
    after: Any
    fields: dict[str, Any]
    shard: int | None = None
    """A sharded campaign's: the shard the action changed; null for a campaign that is
    not split (and for actions outside campaigns)."""


class AuditPage(msgspec.Struct, kw_only=True):
    items: list[AuditEntry]
    next_cursor: str | None


async def audit_log(store: Store, campaign: str | None = None, actor: str | None = None,
                    window: Window = Window(), cursor: str | None = None,
                    limit: int = DEFAULT_LIMIT) -> AuditPage:
    """Admin actions, oldest first: who changed what, with before and after. The
    campaigns' own events of admin actions and the other admin actions' rows
    (durable/admin_audit.py), in one order (time, campaign, type, seq)."""
    e, a = t.events.c, t.admin_actions.c
    both = union_all(
        select(e.campaign_id, e.seq, e.type, e.ts, e.data).where(e.type.in_(AUDITED),
                                                                 *window.where(e.ts)),
        select(a.campaign_id, a.seq, a.type, a.ts, a.data).where(*window.where(a.ts)),
    ).subquery("audited")
    c = both.c
    stmt = select(both)
    if campaign is not None:  # a sharded campaign's actions, on every shard
        stmt = stmt.where(or_(c.campaign_id == campaign,
                              c.campaign_id.startswith(f"{campaign}:s", autoescape=True)))
    if actor is not None:
        stmt = stmt.where(json_field(store, "actor") == actor)
    rows, next_cursor = await _page(store, stmt, "audit-log",
                                    [c.ts, c.campaign_id, c.type, c.seq],
                                    cursor, limit, event_row)
    sharded = await _sharded(store) if rows else set()
    entries = []
    for row in rows:
        before, after = await _before_after(store, row)
        base, k = keys.shard_of_id(row.campaign_id)  # a shard's row is the campaign's
        entries.append(AuditEntry(campaign_id=base, seq=row.seq, type=row.type,
                                  at=row.at, actor=row.actor, before=before, after=after,
                                  fields=row.fields, shard=k if base in sharded else None))
    return AuditPage(items=entries, next_cursor=next_cursor)


async def _sharded(store: Store) -> set[str]:
    """The stored campaigns split across shards (those with a shard 1)."""
    c = t.campaigns.c
    async with store.read() as conn:
        ids = [r[0] for r in await conn.execute(select(c.campaign_id).where(
            c.campaign_id.contains(":s", autoescape=True)))]
    return {keys.shard_of_id(i)[0] for i in ids if keys.is_shard(i)}


async def _before_after(store: Store, row: EventRow) -> tuple[Any, Any]:
    """What an audited action changed, as its event (or the one before it) says."""
    fields = row.fields
    if row.type == admin_audit.TYPE:  # written with both
        return fields.pop("before", None), fields.pop("after", None)
    if row.type == "campaign_patched":
        return _json_or_text(fields.get("before")), _json_or_text(fields.get("after"))
    if row.type == "stock_adjusted":
        before, after = fields.get("before"), fields.get("after")
        return ({"sku": fields.get("sku"), "available": int(before)} if before else None,
                {"sku": fields.get("sku"), "available": int(after)} if after else None)
    # campaign_defined: the definition it replaced is the campaign's previous one.
    c = t.events.c
    async with store.read() as conn:
        prev = (await conn.execute(
            select(c.data).where(c.campaign_id == row.campaign_id,
                                 c.type == "campaign_defined", c.seq < row.seq)
            .order_by(c.seq.desc()).limit(1))).first()
    before = _json_or_text(msgspec.json.decode(prev.data).get("spec")) if prev else None
    return before, _json_or_text(fields.get("spec"))


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError:
        return value


# -- records and their history ----------------------------------------------------

class ClaimLookup(msgspec.Struct, kw_only=True):
    record: ClaimRow
    history: list[EventRow]
    """The events that made the record, in order (a bundle's: its lines' too)."""
    bundle: str | None = None
    """Presales, a bundle claim: the spec's bundle it claimed (none: a claim of lines)."""
    lines: list[ClaimRow] = []
    """Presales, a bundle claim: its lines, each a claim of its own, in line order."""


class CouponLookup(msgspec.Struct, kw_only=True):
    record: CouponRow
    history: list[EventRow]


class RedemptionLookup(msgspec.Struct, kw_only=True):
    record: RedemptionRow
    history: list[EventRow]


MAX_HISTORY = 1000


async def claim_record(store: Store, claim_id: str) -> ClaimLookup | None:
    h, e = t.claim_history.c, t.events.c
    async with store.read() as conn:
        row = (await conn.execute(select(t.claims).where(t.claims.c.claim_id == claim_id))
               ).first()
        if row is None:
            return None
        # a bundle's line was held by its bundle's bundle_held (an older store: by a
        # claim_held of its own), whose history row is the bundle's
        whose = h.claim_id == claim_id if row.bundle_id is None \
            else or_(h.claim_id == claim_id, h.claim_id == row.bundle_id)
        made = select(t.events).join(
            t.claim_history, and_(h.campaign_id == e.campaign_id, h.seq == e.seq)
        ).where(whose).order_by(e.seq).limit(MAX_HISTORY)
        history = [event_row(r) for r in await conn.execute(made)]
    base, k = keys.shard_of_id(row.campaign_id)
    if k or base in await _sharded(store):  # a sharded campaign's: its shard named
        for item in history:
            item.campaign_id, item.shard = base, k
    return ClaimLookup(record=claim_row(row), history=history)


COUPON_TYPES = ev.names(ev.CouponIssued, ev.CouponRedeemed, ev.CouponRolledBack,
                        ev.CouponExpired, ev.CouponTransferred, ev.GiftOffered)


async def _coupon_events(store: Store, coupon_id: str) -> list[EventRow]:
    """A coupon's events: those of its drop (its id names it) whose body names it."""
    e = t.events.c
    drop = coupon_id.rsplit(".", 1)[0]
    async with store.read() as conn:
        rows = await conn.execute(
            select(t.events).where(e.campaign_id == drop, e.type.in_(COUPON_TYPES),
                                   json_field(store, "coupon") == coupon_id)
            .order_by(e.seq).limit(MAX_HISTORY))
        return [event_row(r) for r in rows]


async def coupon_record(store: Store, coupon_id: str) -> CouponLookup | None:
    async with store.read() as conn:
        row = (await conn.execute(select(t.coupons).where(t.coupons.c.coupon_id == coupon_id))
               ).first()
    if row is None:
        return None
    return CouponLookup(record=coupon_row(row), history=await _coupon_events(store, coupon_id))


async def redemption_record(store: Store, redemption_id: str,
                            merchant: str | None = None) -> RedemptionLookup | None:
    """A redemption and its events; with `merchant`, only if it is that merchant's."""
    r = t.redemptions.c
    stmt = select(t.redemptions).where(r.redemption_id == redemption_id)
    if merchant is not None:
        stmt = stmt.where(r.merchant_id == merchant)
    async with store.read() as conn:
        row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    history = [i for i in await _coupon_events(store, row.coupon_id)
               if i.fields.get("redemption") == redemption_id]
    return RedemptionLookup(record=redemption_row(row), history=history)


# -- users ------------------------------------------------------------------------

WAITLIST_TYPES = ev.names(ev.WaitlistJoined, ev.WaitlistLeft, ev.WaitlistSkipped,
                          ev.OfferMade, ev.OfferAccepted, ev.OfferLapsed, ev.OfferDeclined)
_WAITLIST_ENDS = {"waitlist_left": "left", "waitlist_skipped": "skipped",
                  "offer_accepted": "accepted", "offer_lapsed": "lapsed",
                  "offer_declined": "declined"}


class WaitlistRecord(msgspec.Struct, kw_only=True):
    campaign_id: str
    sku: str
    qty: int
    status: str
    """waiting, offered, or how it ended: left, skipped, accepted, lapsed, declined"""
    joined_at: datetime
    ended_at: datetime | None = None


class UserHistory(msgspec.Struct, kw_only=True):
    user: str
    claims: list[ClaimRow]
    """Newest first, across campaigns."""
    waitlist: list[WaitlistRecord]
    coupons: list[CouponRow]
    redemptions: list[RedemptionRow]
    """Redemptions of the user's coupons."""
    events: list[EventRow]
    """Every stored event naming the user (claims, waitlists, offers, coupons), newest
    first."""
    truncated: bool
    """A list reached `limit`: page the claims with /admin/v1/campaigns/{id}/claims?user=."""


async def user_history(store: Store, user: str, limit: int = DEFAULT_LIMIT) -> UserHistory:
    """What the store knows of one user, newest first, at most `limit` of each kind."""
    check_limit(limit)
    claim_page = await claims(store, ClaimFilter(user=user), limit=limit, newest_first=True)
    co, r = t.coupons.c, t.redemptions.c
    async with store.read() as conn:
        coupons = [coupon_row(row) for row in await conn.execute(
            select(t.coupons).where(co.user_id == user)
            .order_by(co.created_ms.desc(), co.coupon_id).limit(limit))]
        coupon_ids = [c.coupon_id for c in coupons]
        redemptions = [redemption_row(row) for row in await conn.execute(
            select(t.redemptions).where(r.coupon_id.in_(coupon_ids))
            .order_by(r.redeemed_ms.desc(), r.redemption_id).limit(limit))] if coupon_ids else []
        events = await _user_events(conn, store, user, limit)
    truncated = (claim_page.next_cursor is not None
                 or any(len(x) >= limit for x in (coupons, redemptions, events)))
    return UserHistory(user=user, claims=claim_page.items, waitlist=_waitlist(events),
                       coupons=coupons, redemptions=redemptions, events=events,
                       truncated=truncated)


async def _user_events(conn: Any, store: Store, user: str, limit: int) -> list[EventRow]:
    """The newest events naming the user, each kind found through an index: claims'
    through their status history, waitlist moves by type, coupons' in the user's drops."""
    e, h, c, co = t.events.c, t.claim_history.c, t.claims.c, t.coupons.c
    newest = (e.ts.desc(), e.campaign_id, e.seq.desc())
    kinds = [
        select(t.events).join(t.claim_history, and_(h.campaign_id == e.campaign_id,
                                                     h.seq == e.seq))
        .join(t.claims, c.claim_id == h.claim_id).where(c.user_id == user),
        select(t.events).where(e.type.in_(WAITLIST_TYPES), json_field(store, "user") == user),
        select(t.events).where(
            e.campaign_id.in_(select(co.campaign_id).where(co.user_id == user).distinct()),
            e.type.in_(COUPON_TYPES), json_field(store, "user") == user)]
    found: dict[tuple[str, int], EventRow] = {}
    for stmt in kinds:
        for row in await conn.execute(stmt.order_by(*newest).limit(limit)):
            found[(row.campaign_id, row.seq)] = event_row(row)
    ordered = sorted(found.values(), key=lambda r: (r.at, r.campaign_id, r.seq), reverse=True)
    return ordered[:limit]


def _waitlist(events: list[EventRow]) -> list[WaitlistRecord]:
    """Waitlist entries as their events tell them: waiting, offered, or how they ended."""
    entries: dict[tuple[str, str], WaitlistRecord] = {}
    for row in sorted(events, key=lambda r: (r.campaign_id, r.seq)):  # in order made
        if row.type not in WAITLIST_TYPES:
            continue
        place = (row.campaign_id, str(row.fields.get("sku")))
        if row.type == "waitlist_joined":
            entries[place] = WaitlistRecord(campaign_id=place[0], sku=place[1],
                                           qty=int(row.fields.get("qty", 0)),
                                           status="waiting", joined_at=row.at)
        elif place in entries:
            entry = entries[place]
            if row.type == "offer_made":
                entry.status = "offered"
            else:
                entry.status, entry.ended_at = _WAITLIST_ENDS[row.type], row.at
    return sorted(entries.values(), key=lambda x: x.joined_at, reverse=True)


# -- merchants and redemptions ----------------------------------------------------

@dataclass(frozen=True)
class RedemptionFilter:
    merchant: str | None = None
    drop: str | None = None
    window: Window = Window()

    def where(self) -> list[ColumnElement[bool]]:
        r = t.redemptions.c
        found = self.window.where(r.redeemed_ms)
        if self.merchant is not None:
            found.append(r.merchant_id == self.merchant)
        if self.drop is not None:  # a sharded drop's redemptions are stored per shard
            found.append(or_(r.campaign_id == self.drop,
                             r.campaign_id.startswith(f"{self.drop}:s", autoescape=True)))
        return found


async def redemptions(store: Store, where: RedemptionFilter, cursor: str | None = None,
                      limit: int = DEFAULT_LIMIT) -> RedemptionPage:
    """Redemptions matching `where`, oldest first."""
    r = t.redemptions.c
    stmt = select(t.redemptions).where(*where.where())
    items, next_cursor = await _page(store, stmt, "redemptions",
                                     [r.redeemed_ms, r.redemption_id], cursor, limit,
                                     redemption_row)
    return RedemptionPage(items=items, next_cursor=next_cursor)


class Totals(msgspec.Struct, kw_only=True):
    redemptions: int
    """Every redemption, rolled back or not."""
    redeemed: int
    """Those that stand (not rolled back): the amounts below are theirs."""
    rolled_back: int
    discount: int
    """Face value discounted, summed."""
    order_amount: int
    """Order amounts, summed."""


class MerchantTotals(Totals, kw_only=True):
    merchant_id: str


class MerchantPage(msgspec.Struct, kw_only=True):
    items: list[MerchantTotals]
    next_cursor: str | None


class SettlementDay(Totals, kw_only=True):
    day: str
    """The UTC date of the redemptions, YYYY-MM-DD."""


class Settlement(msgspec.Struct, kw_only=True):
    merchant_id: str
    since: datetime
    until: datetime
    days: list[SettlementDay]
    """Days with redemptions, in order."""
    total: Totals


def _totals() -> list[Any]:
    r = t.redemptions.c
    kept = r.status == "redeemed"

    def kept_sum(value: Any) -> Any:
        return func.coalesce(func.sum(case((kept, value), else_=0)), 0)

    return [func.count().label("redemptions"), kept_sum(1).label("redeemed"),
            func.coalesce(func.sum(case((r.status == "rolled_back", 1), else_=0)), 0)
            .label("rolled_back"),
            kept_sum(r.discount).label("discount"), kept_sum(r.order_amount).label("order_amount")]


def _totals_of(row: Any) -> dict[str, int]:
    return {"redemptions": int(row.redemptions), "redeemed": int(row.redeemed),
            "rolled_back": int(row.rolled_back), "discount": int(row.discount),
            "order_amount": int(row.order_amount)}


async def merchants(store: Store, cursor: str | None = None,
                    limit: int = DEFAULT_LIMIT) -> MerchantPage:
    """Every merchant with redemptions, and its totals."""
    check_limit(limit)
    r = t.redemptions.c
    stmt = select(r.merchant_id, *_totals()).group_by(r.merchant_id)
    if cursor is not None:
        (after,) = decode_cursor("merchants", cursor, [str])
        stmt = stmt.where(r.merchant_id > after)
    async with store.read() as conn:
        rows = list(await conn.execute(stmt.order_by(r.merchant_id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [MerchantTotals(merchant_id=row.merchant_id, **_totals_of(row)) for row in rows]
    return MerchantPage(items=items, next_cursor=encode_cursor(
        "merchants", [rows[-1].merchant_id]) if more else None)


MAX_SETTLEMENT_DAYS = 366


async def settlement(store: Store, merchant: str, window: Window) -> Settlement:
    """Per UTC day of redemption: counts, discounts and order amounts of `merchant`.

    Amounts count redemptions that stand (not rolled back), so a day's figures
    are what the merchant's finance team reconciles against its orders."""
    if window.since_ms is None or window.until_ms is None:
        raise QueryError("since and until are both required")
    if window.until_ms - window.since_ms > MAX_SETTLEMENT_DAYS * DAY_MS:
        raise QueryError(f"since to until must span at most {MAX_SETTLEMENT_DAYS} days")
    r = t.redemptions.c
    day = (r.redeemed_ms // DAY_MS).label("day")
    stmt = (select(day, *_totals())
            .where(r.merchant_id == merchant, *window.where(r.redeemed_ms))
            .group_by(day).order_by(day))
    async with store.read() as conn:
        rows = list(await conn.execute(stmt))
    days = [SettlementDay(day=from_ms(int(row.day) * DAY_MS).date().isoformat(),
                          **_totals_of(row)) for row in rows]
    total = Totals(**{f: sum(getattr(d, f) for d in days) for f in columns_of(Totals)})
    return Settlement(merchant_id=merchant, since=from_ms(window.since_ms),
                      until=from_ms(window.until_ms), days=days, total=total)
