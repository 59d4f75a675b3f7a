"""Stream entries as typed events, and their rows in the `events` table.

Every event type a Lua script emits is one `Struct` here, tagged with its type
name (the tagged union `AnyEvent`). Entries and stored rows are decoded here
and nowhere else; every other module matches on the classes.

An entry is a header written by `emit()` (seq, type, ts, epoch) and the
script's own fields, every value a string. The header becomes the common
fields of `Event`; the script's fields are kept, as written, in `raw` (the
`data` column: a newer version's extra fields survive an older persister)
and decoded, ints as ints, into the event's own fields.

A type this version does not know (a newer version wrote it) decodes to
`Unknown`: it is stored like any other, and the projections stop before it
until a version that knows it folds it (see projection.py).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from stampede.state import records

_HEADER = frozenset(("seq", "type", "ts", "epoch"))
_encode = msgspec.json.Encoder().encode


class BadEvent(ValueError):
    """A stream entry or row that cannot be read as an event (a dead-letter candidate)."""


class Event(msgspec.Struct, tag_field="type", kw_only=True, gc=False):
    """What every event carries; the decoder fills these in, never the entry's body.

    Events are read-only by convention (not frozen: the decoder sets the header
    after decoding the body, and plain assignment is the cheapest way)."""
    campaign_id: str = ""
    seq: int = 0
    ts: int = 0
    epoch: int = 0
    stream_id: str = ""
    raw: str = "{}"
    """The script's fields as written (a JSON object of strings): the `data` column."""


# -- campaigns and stock ------------------------------------------------------

class CampaignDefined(Event, tag="campaign_defined"):
    spec: str
    actor: str | None = None
    replaced: bool = False
    meta: str | None = None
    """The definition's meta fields as JSON; None in events older than it."""


class CampaignPatched(Event, tag="campaign_patched"):
    actor: str
    before: str
    after: str


class WaveReleased(Event, tag="wave_released"):
    sku: str
    qty: int
    wave: int


class StockAdjusted(Event, tag="stock_adjusted"):
    sku: str
    delta: int
    actor: str
    before: int | None = None
    after: int | None = None
    idem: str | None = None
    """The operation's idempotency key (its Redis key), for recovery to rebuild the answer."""
    released: int | None = None
    """The SKU's released total after the change (the answer's); None in older events."""
    # -- sharded campaigns: moves of units between shards --
    peer: int | None = None
    """A move between shards (actor `shard-move:<move_id>`): the other shard's number,
    the receiver of a lend, the donor of a borrow; recovery rebuilds the move outbox
    and log from it. None for any other change and in older events."""


# -- claims -------------------------------------------------------------------

class ClaimEvent(Event):
    """A claim's change of status (the `claim_*` events)."""
    claim: str
    user: str
    sku: str
    qty: int


class ClaimHeld(ClaimEvent, tag="claim_held"):
    price: int
    deadline: int
    idem: str | None = None
    fp: str | None = None
    identity: str = ""
    offer: bool = False
    """A waitlist offer (a hold in the user's name), not a claim of their own."""
    grant: str = ""
    """A grant (after-sale), not a claim: its source, "ops:<name>" or "checkin:<sale>";
    grants bypass the per-user limits."""
    code: str = ""
    """Presales: the id "<batch>.<serial>" of the presale code the claim spent, if any."""
    alloc: str = ""
    """Presales: what the hold took from the SKU's allocations, "name:n,..." ('' none)."""
    channel: str = ""
    """Presales: the claimant's sales channel, written for a SKU with allocations."""
    bundle: str = ""
    """Presales: the bundle claim this hold is a line of ('' a claim alone)."""


class ClaimConfirmed(ClaimEvent, tag="claim_confirmed"):
    price: int
    idem: str | None = None
    """The caller's Idempotency-Key, for recovery to rebuild the remembered answer."""


class ClaimExpired(ClaimEvent, tag="claim_expired"):
    idem: str | None = None
    """Written by the same emit as a cancel's (release_hold); an expiry has no caller's key."""


class ClaimCancelled(ClaimEvent, tag="claim_cancelled"):
    idem: str | None = None
    """The caller's Idempotency-Key, for recovery to rebuild the remembered answer."""


# -- waitlists and their offers -------------------------------------------------

class WaitlistJoined(Event, tag="waitlist_joined"):
    user: str
    sku: str
    qty: int
    wseq: str | None = None
    """The entry's place in line, zero-padded as it sorts; None in events older than it."""


class WaitlistLeft(Event, tag="waitlist_left"):
    user: str
    sku: str
    qty: int


class WaitlistSkipped(Event, tag="waitlist_skipped"):
    user: str
    sku: str
    qty: int
    reason: str


class OfferMade(Event, tag="offer_made"):
    claim: str
    user: str
    sku: str
    qty: int
    deadline: int


class OfferSettled(Event):
    """An offer's end (accepted, lapsed or declined): its waitlist entry ends with it."""
    claim: str
    user: str
    sku: str
    qty: int


class OfferAccepted(OfferSettled, tag="offer_accepted"):
    pass


class OfferLapsed(OfferSettled, tag="offer_lapsed"):
    pass


class OfferDeclined(OfferSettled, tag="offer_declined"):
    pass


# -- coupons --------------------------------------------------------------------

class CouponIssued(Event, tag="coupon_issued"):
    coupon: str
    user: str
    template: str
    claim: str
    uses: int
    value: int
    valid_from: int
    valid_to: int
    locator: str


class CouponRedeemed(Event, tag="coupon_redeemed"):
    coupon: str
    redemption: str
    merchant: str
    order: str
    amount: int
    discount: int
    uses_left: int
    user: str
    template: str
    fp: str = ""
    lines: str = ""
    """Coupon rules: the discount per line, JSON [[item, category, qty, amount,
    discount], ...] ('' for an order without lines)."""


class CouponRolledBack(Event, tag="coupon_rolled_back"):
    coupon: str
    redemption: str
    merchant: str
    discount: int
    uses_left: int
    template: str


class CouponExpired(Event, tag="coupon_expired"):
    coupon: str
    user: str
    template: str
    uses_left: int


class CouponTransferred(Event, tag="coupon_transferred"):
    coupon: str
    giver: str = msgspec.field(name="from")
    user: str
    template: str
    locator: str
    token: str = ""
    nonce: str = ""
    counted: bool = False
    """Whether the gift counted against the receiver's gift limit."""


class GiftOffered(Event, tag="gift_offered"):
    coupon: str
    user: str
    expires: int
    token: str = ""


# -- codes users type (promo and referral codes) ---------------------------------

class CodeClaimed(Event, tag="code_claimed"):
    """A claim made with a code (after its claim and coupon events); a referral's
    reward is `reward_claim`, a claim of the referrer's own."""
    claim: str
    user: str
    code: str
    kind: str
    """promo or referral"""
    qty: int
    referrer: str = ""
    reward_claim: str = ""
    identity: str = ""


class ReferralCodeMinted(Event, tag="referral_code_minted"):
    user: str
    code: str
    identity: str


# -- points exchange -------------------------------------------------------------

class PointsExchanged(Event, tag="points_exchanged"):
    """A claim paid in points (after its claim and coupon events)."""
    claim: str
    user: str
    sku: str
    qty: int
    debit: str
    points: int

# -- paid vouchers -----------------------------------------------------------------

class VoucherHeld(Event, tag="voucher_held"):
    """A paid voucher's claim held until payment (after its claim_held)."""
    claim: str
    user: str
    sku: str
    qty: int
    amount: int
    """the price to pay: the SKU's price x qty"""
    value: int
    """the face value its coupons will have (kept from the budget while held)"""
    deadline: int


class VoucherPaid(Event, tag="voucher_paid"):
    """A paid voucher's hold paid (after its claim_confirmed, before its coupon_issued)."""
    claim: str
    user: str
    sku: str
    qty: int
    amount: int
    payment: str
    idem: str = ""


class VoucherRefunded(Event, tag="voucher_refunded"):
    """An unused paid voucher refunded: its coupons voided, its unit and value returned."""
    claim: str
    user: str
    sku: str
    qty: int
    actor: str
    amount: int
    value: int
    coupons: str
    """the voided coupon ids, comma-separated"""
    idem: str = ""


# -- coupon rules: live template changes -----------------------------------------

class CouponDropPatched(Event, tag="coupon_drop_patched"):
    """A live change of a drop's caps and templates (coupon_patch.lua)."""
    actor: str
    before: str
    """The changed meta fields' values before (JSON; false: absent)."""
    after: str
    """Their values after (JSON): recovery lays them over the drop's spec."""
    grow: str = "{}"
    """{template: {"vt": ms, "vd": days}}: the validity that reached issued coupons."""
    extended: int = 0


# -- the guard ------------------------------------------------------------------

class RequestsRefused(Event, tag="requests_refused"):
    n: int
    refusals: str


# -- after-sale: refunds ----------------------------------------------------------

class ClaimRefunded(Event, tag="claim_refunded"):
    """Units of a confirmed claim given back (not a ClaimEvent: the claim may stay
    confirmed, with fewer units left to refund)."""
    claim: str
    user: str
    sku: str
    qty: int
    amount: int
    left: int
    """Units of the claim still refundable; 0: the claim is now refunded."""
    to: str
    """restock or retire"""
    actor: str
    reason: str = ""
    buyer: bool = False
    """The buyer refunded it (else an operator)."""
    idem: str | None = None
    """The operation's idempotency key (its Redis key), for recovery to rebuild the answer."""
    fp: str = ""
    tickets: str = ""
    """A ticketed campaign's refunded tickets: their unit numbers, comma-separated."""


class TicketCheckedIn(Event, tag="ticket_checked_in"):
    """A scan admitted a ticket (a refused scan changes nothing and is not an event)."""
    ticket: str
    claim: str
    user: str
    sku: str
    gate: str
    scanner: str
    at: int
    """The scan's time (ms): an offline scanner's, uploaded later, or the server's."""


# -- after-sale: transfers ----------------------------------------------------------

class TransferOffered(Event, tag="transfer_offered"):
    claim: str
    user: str
    expires: int
    token: str
    """The token's SHA-256 (the token itself is never stored)."""
    ticket: int = 0
    """A one-ticket transfer: the ticket's number n in the claim; 0: the whole claim."""


class ClaimTransferred(Event, tag="claim_transferred"):
    """A sold claim re-issued to its recipient under a new id; the old one is transferred."""
    claim: str
    new_claim: str
    giver: str = msgspec.field(name="from")
    user: str
    sku: str
    qty: int
    """The units that move: the claim's, less any refunded."""
    price: int
    created: int
    deadline: int
    token: str = ""
    ticket: int = 0
    """A one-ticket transfer: the number n of the ticket "<claim>-<n>" that moved (the
    old claim keeps its other tickets and stays confirmed); 0: the whole claim."""
    identity: str = ""
    """A per_person sale: the recipient's identity, which the new claim's units now
    count against ('' none)."""


# -- presales: presale codes ----------------------------------------------------

class PresaleCodesIssued(Event, tag="presale_codes_issued"):
    batch: int
    count: int
    uses: int
    bind: int
    tier: str
    actor: str = ""


class SegmentChanged(Event, tag="segment_changed"):
    segment: str
    op: str
    """add or remove"""
    users: str
    """the user ids that changed, comma-separated"""
    n: int
    actor: str = ""


# -- presales: allocations --

class AllocationReturned(Event, tag="allocation_returned"):
    """An allocation's unused units went back to the SKU's shared pool."""
    sku: str
    allocation: str
    qty: int
    by: str
    """schedule (its returns_at), ops, or patch (left out of a PATCH of allocations)"""
    actor: str = ""


# -- presales: bundles --

class BundleHeld(Event, tag="bundle_held"):
    """A claim of several SKUs was held whole, every line in this one event (`items`).
    An event of the older shape has no `items`: its lines' claim_held events came first."""
    claim: str
    """the bundle claim's id (the buyer's); each line is a claim of its own"""
    user: str
    bundle: str
    """the spec's bundle it claimed ('' for a claim of lines)"""
    lines: str
    """the lines' claim ids, ','-joined in line order"""
    price: int
    """the lines' sum: each line's locked price times its units"""
    deadline: int
    idem: str | None = None
    fp: str | None = None
    items: str = ""
    """each line's sku, qty, price and allocation take (records.py BundleLineRecord), in
    line order; '' in the older shape"""
    identity: str = ""
    """the real person a per_person campaign counted every line to ('' none)"""
    channel: str = ""
    """the claimant's sales channel, written when a line took from allocations"""
    code: str = ""
    """the presale code the bundle spent, once (on its first line), '' none"""

    def held_lines(self) -> "list[ClaimHeld]":
        """Each line's hold as the claim_held event an older version wrote for it (same
        seq, ts and epoch as the bundle's); [] for the older shape, whose lines came as
        events of their own."""
        out = []  # (lines and items of unequal length: audit finds the bundle incomplete)
        for i, (line, item) in enumerate(zip(self.lines.split(","),
                                             records.decode_bundle_items(self.items),
                                             strict=False)):
            ev = ClaimHeld(claim=line, user=self.user, sku=item.sku, qty=item.qty,
                           price=item.price, deadline=self.deadline, identity=self.identity,
                           alloc=item.alloc, channel=self.channel if item.alloc else "",
                           code=self.code if i == 0 else "", bundle=self.claim,
                           campaign_id=self.campaign_id, seq=self.seq, ts=self.ts,
                           epoch=self.epoch, stream_id=self.stream_id)
            out.append(ev)
        return out


def claim_holds(ev: Event) -> "list[ClaimHeld]":
    """The holds an event made: a claim_held's own, a bundle_held's lines (none in the
    older shape, whose lines are claim_held events), else none."""
    if isinstance(ev, ClaimHeld):
        return [ev]
    if isinstance(ev, BundleHeld) and ev.items:
        return ev.held_lines()
    return []


# -- waiting room: tickets as events (durable/queue_recovery.py rebuilds the room) --

class QueueTicketIssued(Event, tag="queue_ticket_issued"):
    """A user took a waiting-room ticket (one per user)."""
    user: str
    place: str
    """its score in the queue, as written: a lottery draw in [0,1) before the
    opening, else 1 + its arrival number"""


class QueueAdmitted(Event, tag="queue_admitted"):
    """The tickets at queue ranks first..first+count-1 (0-based, queue order) were
    admitted, each until `until`; the serving counter is now first + count."""
    first: int
    count: int
    until: int
    tokens: int
    """the admission bucket left (thousandths of a ticket) as of `at` (ms)"""
    at: int


class QueueLapsed(Event, tag="queue_lapsed"):
    """Admissions whose window ended unused left the room."""
    count: int


class Unknown(Event):
    """An event of a type this version does not know: kept, never folded."""
    name: str = ""


AnyEvent = (CampaignDefined | CampaignPatched | WaveReleased | StockAdjusted | ClaimHeld
            | ClaimConfirmed | ClaimExpired | ClaimCancelled | WaitlistJoined | WaitlistLeft
            | WaitlistSkipped | OfferMade | OfferAccepted | OfferLapsed | OfferDeclined
            | CouponIssued | CouponRedeemed | CouponRolledBack | CouponExpired
            | CouponTransferred | GiftOffered | RequestsRefused
            | CouponDropPatched | PresaleCodesIssued | SegmentChanged
            | CodeClaimed | ReferralCodeMinted | PointsExchanged
            | ClaimRefunded | TicketCheckedIn | TransferOffered | ClaimTransferred
            | VoucherHeld | VoucherPaid | VoucherRefunded | AllocationReturned
            | BundleHeld | QueueTicketIssued | QueueAdmitted | QueueLapsed)
"""Every event type the scripts emit, tagged by `type`."""

TYPES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls for cls in AnyEvent.__args__}
"""Each event class by its type name."""

# Lax: the entry's values are strings; "12" decodes into an int field.
_BODY = {name: msgspec.json.Decoder(cls, strict=False) for name, cls in TYPES.items()}


def names(*classes: type[Event]) -> tuple[str, ...]:
    """The type names of event classes: to select their rows in SQL."""
    return tuple(str(cls.__struct_config__.tag) for cls in classes)


_NAMES = {cls: name for name, cls in TYPES.items()}


def type_name(ev: Event) -> str:
    """The event's type as the stream and the `events` table spell it."""
    if isinstance(ev, Unknown):
        return ev.name
    return _NAMES.get(type(ev)) or str(ev.__struct_config__.tag)


def _decode(etype: str, raw: str | bytes, campaign_id: str, seq: int, ts: int, epoch: int,
            stream_id: str) -> Event:
    body = _BODY.get(etype)
    try:
        ev = Unknown(name=etype) if body is None else body.decode(raw)
    except msgspec.ValidationError as exc:
        raise BadEvent(f"{etype} {campaign_id}#{seq}: {exc}") from exc
    # The header is not in the body: set it here, once.
    ev.campaign_id, ev.seq, ev.ts, ev.epoch, ev.stream_id = campaign_id, seq, ts, epoch, stream_id
    ev.raw = raw if isinstance(raw, str) else raw.decode()
    return ev


def from_entry(campaign_id: str, entry_id: str, fields: Mapping[str, str]) -> Event:
    """A stream entry (as XRANGE/XREADGROUP give it) as its typed event."""
    try:
        seq, etype, ts = int(fields["seq"]), fields["type"], int(fields["ts"])
        epoch = int(fields.get("epoch", "0"))
    except (KeyError, ValueError) as exc:
        raise BadEvent(f"entry {entry_id}: {exc!r}") from exc
    if seq < 1:
        raise BadEvent(f"entry {entry_id}: seq {seq}")
    raw = _encode({k: v for k, v in fields.items() if k not in _HEADER})
    return _decode(etype, raw, campaign_id, seq, ts, epoch, entry_id)


def from_flat(campaign_id: str, entry_id: str, flat: Sequence[str]) -> Event:
    """A stream entry as the server sends it (name, value, name, value, ...) as its event.

    `emit()` writes the header first and always in one order, so it is read by
    position and the body is the rest: no dict of the whole entry. Any other
    layout (an entry written by hand) goes through `from_entry`."""
    if len(flat) >= 8 and flat[0] == "seq" and flat[2] == "type" and flat[4] == "ts" \
            and flat[6] == "epoch":
        try:
            seq, ts, epoch = int(flat[1]), int(flat[5]), int(flat[7])
        except ValueError as exc:
            raise BadEvent(f"entry {entry_id}: {exc!r}") from exc
        if seq >= 1:
            body = iter(flat[8:])
            raw = _encode(dict(zip(body, body, strict=False)))
            return _decode(flat[3], raw, campaign_id, seq, ts, epoch, entry_id)
    pairs = iter(flat)
    return from_entry(campaign_id, entry_id, dict(zip(pairs, pairs, strict=False)))


EVENT_COLUMNS = ("campaign_id", "seq", "type", "ts", "epoch", "stream_id", "data")
"""The `events` table's columns, in the order of `row_of`."""


def row_of(ev: Event) -> tuple[Any, ...]:
    """The event's `events` row as a tuple in EVENT_COLUMNS order (the persister's bulk insert)."""
    return (ev.campaign_id, ev.seq, type_name(ev), ev.ts, ev.epoch, ev.stream_id, ev.raw)


def to_row(ev: Event) -> dict[str, Any]:
    return {"campaign_id": ev.campaign_id, "seq": ev.seq, "type": type_name(ev), "ts": ev.ts,
            "epoch": ev.epoch, "stream_id": ev.stream_id, "data": ev.raw}


def from_row(row: Any) -> Event:
    """A row of the `events` table as its typed event."""
    return _decode(row.type, row.data, row.campaign_id, row.seq, row.ts, row.epoch,
                   row.stream_id)
