"""Typed messages of the engine (msgspec Structs): specs in, views out.

The same types validate requests in the gateway and generate its OpenAPI
schema, so the contract is written once.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from stampede.domain.coupons.spec import CouponDropSpec
from stampede.domain.throttle import ThrottlePatch, ThrottleSpec

SkuId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="SKU id")]
Qty = Annotated[int, Meta(ge=1, le=1000)]
Limit = Annotated[int, Meta(ge=1, le=1_000_000)]
Price = Annotated[int, Meta(ge=0, le=10**12, description="smallest currency unit")]
TtlSeconds = Annotated[int, Meta(ge=1, le=7 * 86_400)]

_STRICT = {"forbid_unknown_fields": True, "kw_only": True}

# RFC 3339 date-time with an offset: `format` alone is only an annotation in
# JSON Schema, so the pattern tells generated clients what really parses.
Timestamp = Annotated[datetime, Meta(tz=True, extra_json_schema={
    "pattern": r"^(19|20|21)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
               r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-](0\d|1[0-4]):[0-5]\d)$"})]


class Wave(Struct, **_STRICT):
    at: Timestamp
    qty: Annotated[int, Meta(ge=1, le=100_000_000)]


class PriceStep(Struct, **_STRICT):
    """A price that applies to a claim meeting every condition the step names; the
    first matching step of the list prices the claim, else the SKU's `price`."""
    price: Price
    until: Timestamp | None = None
    """By time: claims before this moment (an early-bird price)."""
    first_units: Limit | None = None
    """By units sold: while the SKU's held and sold units, this claim's included, are
    at most this many."""
    tiers: Annotated[list[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]],
                     Meta(min_length=1, max_length=32)] | None = None
    """By tier: claimants whose credential (or presale code) carries one of these."""


PriceSteps = Annotated[list[PriceStep], Meta(max_length=16)]
"""A SKU's presale price steps, in order: the first whose conditions hold prices a claim."""


# -- presales: channel and tier allocations ----------------------------------------

ChannelName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$",
                                  description="a sales channel (app, web, partner, ...)")]


class AllocationSpec(Struct, **_STRICT):
    """Units of a SKU's stock reserved for claims through some channels and/or of some
    tiers; the rest of the stock is the shared pool every claim may take from."""
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    qty: Annotated[int, Meta(ge=1, le=1_000_000_000)]
    channels: Annotated[list[ChannelName], Meta(min_length=1, max_length=16)] | None = None
    """Claims whose credential names one of these channels may take from it."""
    tiers: Annotated[list[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]],
                     Meta(min_length=1, max_length=32)] | None = None
    """Claims whose credential (or presale code) carries one of these tiers may."""
    returns_at: Timestamp | None = None
    """When its unused units return to the shared pool (or by ops action, earlier)."""


class AllocationReturn(Struct, kw_only=True):
    sku: str
    allocation: str
    returned: int
    """Units that went back to the SKU's shared pool."""


class SkuSpec(Struct, **_STRICT):
    sku: SkuId
    price: Price
    per_user: Limit | None = None
    """Per-user limit for this SKU, on top of the campaign's."""
    waves: Annotated[list[Wave], Meta(max_length=1000)] = []
    price_steps: PriceSteps = []
    """Presales: the price decided at claim time and locked into the hold."""
    allocations: Annotated[list[AllocationSpec], Meta(max_length=16)] = []
    """Presales: stock reserved per channel or tier; the rest is shared."""


class Limits(Struct, **_STRICT):
    per_user: Limit | None = None
    """Units one user may hold or have bought in the campaign."""
    max_per_claim: Qty = 10
    # -- presales: real-name one per person --
    per_person: Limit | None = None
    """Units one real person (the credential's hashed identity, `idh`) may hold or have
    bought in the campaign, across all their accounts; a claim without an identity is
    refused. Set at definition only."""


class WaitlistSpec(Struct, **_STRICT):
    """Sold-out backfill: released units are offered to the SKU's waitlist first."""
    max_length: Annotated[int, Meta(ge=1, le=10_000_000)] = 10_000
    """Most users waiting on one SKU's list; joining a full list is a conflict."""
    offer_ttl_s: TtlSeconds = 300
    """How long an offer (a hold in the user's name) waits for confirmation."""


AdmissionRate = Annotated[float, Meta(ge=0.001, le=1_000_000, description="users per second")]
Burst = Annotated[int, Meta(ge=1, le=1_000_000)]
MaxActive = Annotated[int, Meta(ge=1, le=10_000_000)]


class WaitingRoomSpec(Struct, **_STRICT):
    """Paced admission: users queue for a turn; only admitted users may claim."""
    enabled: bool = True
    rate_per_s: AdmissionRate = 50.0
    burst: Burst | None = None
    """Most admissions at once after a quiet spell; default one second's worth."""
    max_active: MaxActive = 1000
    """Most admitted users whose turn is still open, at any moment."""
    admission_window_s: Annotated[int, Meta(ge=1, le=86_400)] = 120
    """How long an admitted user has to claim before the turn passes."""
    token_ttl_s: Annotated[int, Meta(ge=1, le=3600)] = 60
    """Lifetime of one admission token (poll again for a fresh one)."""


# -- after-sale: refunds -----------------------------------------------------------


class RefundPolicy(Struct, **_STRICT):
    """What a refund does with its units, and whether buyers may ask for one."""
    units_to: Literal["restock", "retire"] = "restock"
    """restock: to the SKU's waitlist head first, then available stock; retire: withdrawn."""
    buyer_window_s: Annotated[int, Meta(ge=0, le=366 * 86_400)] | None = None
    """Seconds after purchase (the hold's creation) a buyer may refund their own claim;
    null: only operators refund."""


class SkuRefunds(Struct, kw_only=True):
    sku: str
    units: int
    amount: int
    """In the smallest currency unit: units times the price each was bought at."""


VenueId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="venue id")]


class TicketSpec(Struct, **_STRICT):
    """Each confirmed unit is a ticket: a static id and a rotating code, checked in at
    the venue's gates by its scanners."""
    venue: VenueId


class TransferPolicy(Struct, **_STRICT):
    """Holders may pass a sold claim (its tickets) to another user with a single-use token."""
    offer_ttl_s: Annotated[int, Meta(ge=60, le=30 * 86_400)] = 86_400
    """How long a transfer token stays usable."""
    recipient_limits: bool = True
    """The campaign's per-user and per-SKU limits apply to the recipient, as if they
    had bought the units; false: a transfer is never refused for them."""


class PackGrant(Struct, **_STRICT):
    """A coupon pack granted to a ticket's holder at check-in, or to a buyer at confirm."""
    drop: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    sku: SkuId
# -- presales: access phases --------------------------------------------------------

TierName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$",
                               description="an audience tier a user's credential carries")]
PhaseName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


SegmentName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$",
                                  description="an audience segment ops upload user ids to")]


class PhaseSpec(Struct, **_STRICT):
    """One access phase: from `opens_at` on, users of its tiers or segments may claim
    (until the campaign closes). With neither it opens to everyone: the public sale."""
    name: PhaseName
    opens_at: Timestamp
    tiers: Annotated[list[TierName], Meta(min_length=1, max_length=32)] | None = None
    segments: Annotated[list[SegmentName], Meta(min_length=1, max_length=8)] | None = None
    """Segments whose members (user ids ops upload) this phase admits."""


Phases = Annotated[list[PhaseSpec], Meta(max_length=16)]


# -- presales: presale codes --------------------------------------------------------

class PresaleCodeBatch(Struct, **_STRICT):
    """A batch of presale codes to issue: each lends its claim `tier` (for the phases)."""
    count: Annotated[int, Meta(ge=1, le=100_000)]
    tier: TierName
    """The audience tier a valid code lends its claim: name it in a phase's tiers."""
    uses: Annotated[int, Meta(ge=1, le=1000)] = 1
    """Claims each code may make."""
    bind_to_user: bool = False
    """A code is bound to the first user who claims with it; others are refused."""


class PresaleBatchView(Struct, kw_only=True):
    batch: int
    count: int
    tier: str
    uses: int
    bind_to_user: bool
    created_at: datetime
    codes_used: int = 0
    """Codes that made at least one claim."""
    claims: int = 0
    """Claims the batch's codes made (each spends one use)."""


class SegmentChange(Struct, kw_only=True):
    segment: str
    changed: int
    """Members added (or removed) by this request; ids already in (or not in) count 0."""
    size: int


# -- presales: bundles and add-ons -------------------------------------------------

BUNDLE_MAX_LINES = 8
"""Most SKUs one claim (a bundle, or a claim of several lines) may take at once."""
BundleName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="a bundle's name")]


class BundleLine(Struct, **_STRICT):
    """One SKU of a bundle or of a claim of several lines, and its units."""
    sku: SkuId
    qty: Qty = 1


BundleLines = Annotated[list[BundleLine], Meta(min_length=1, max_length=BUNDLE_MAX_LINES)]


class BundleSpec(Struct, **_STRICT):
    """A package claimed by its name: every line held together, all or nothing, each
    at its SKU's price locked at claim time (the bundle costs the sum of its lines)."""
    lines: BundleLines


class CampaignSpec(Struct, **_STRICT):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    opens_at: Timestamp
    closes_at: Timestamp
    skus: Annotated[list[SkuSpec], Meta(min_length=1, max_length=1000)]
    hold_ttl_s: TtlSeconds = 600
    limits: Limits = msgspec.field(default_factory=Limits)
    waitlist: WaitlistSpec | None = None
    waiting_room: WaitingRoomSpec | None = None
    throttle: ThrottleSpec | None = None
    """Scalper throttling; none: the service's default (STAMPEDE_THROTTLE) when defined."""
    coupons: CouponDropSpec | None = None
    """Makes the campaign a coupon drop: its SKUs are coupon templates or packs."""
    refunds: RefundPolicy | None = None
    """After-sale refunds; none: operators refund and the units are restocked."""
    tickets: TicketSpec | None = None
    """A sale whose confirmed units are tickets (not for coupon drops)."""
    transfers: TransferPolicy | None = None
    """Transfers of sold claims between users; none: not transferable."""
    on_checkin: PackGrant | None = None
    """A ticketed sale's check-in grants this drop's SKU to the ticket's holder, once."""
    on_confirm: PackGrant | None = None
    """A sale's confirmed claim grants this drop's SKU to its buyer, once per claim."""
    phases: Phases = []
    """Presale access phases, in order of opening; none: everyone from opens_at."""
    bundles: Annotated[dict[BundleName, BundleSpec], Meta(max_length=64)] = {}
    """Presales: packages of several SKUs claimed at once by name (`bundle` in a claim)."""
    shards: Annotated[int, Meta(ge=1, le=64)] = 1
    """Hot campaigns: split the stock over this many shards (Redis slots), each user
    served by one; 1 = not split (docs/shards.md says what changes)."""


class LimitsPatch(Struct, **_STRICT):
    per_user: Limit | None | UnsetType = UNSET
    max_per_claim: Qty | UnsetType = UNSET


class WaitingRoomPatch(Struct, **_STRICT):
    rate_per_s: AdmissionRate | UnsetType = UNSET
    burst: Burst | UnsetType = UNSET
    max_active: MaxActive | UnsetType = UNSET
    paused: bool | UnsetType = UNSET
    """Stop admitting (tickets still queue); false resumes at the current rate."""


class CampaignPatch(Struct, **_STRICT):
    state: Literal["open", "paused", "closed"] | UnsetType = UNSET
    opens_at: Timestamp | UnsetType = UNSET
    closes_at: Timestamp | UnsetType = UNSET
    hold_ttl_s: TtlSeconds | UnsetType = UNSET
    limits: LimitsPatch | UnsetType = UNSET
    sku_limits: dict[SkuId, Limit | None] | UnsetType = UNSET
    """Per-user limit by SKU; null removes it."""
    waiting_room: WaitingRoomPatch | UnsetType = UNSET
    """Live admission settings of a campaign that has a waiting room."""
    throttle: ThrottlePatch | UnsetType = UNSET
    """Scalper throttling: the fields given replace the campaign's, for the next request."""
    phases: Phases | UnsetType = UNSET
    """Presale access phases, replaced whole for the next claim; [] removes them."""
    price_steps: dict[SkuId, PriceSteps] | UnsetType = UNSET
    """Presale price steps by SKU, each list replaced whole for the next claim (prices
    locked into existing holds stay); [] removes them."""
    allocations: Annotated[
        dict[SkuId, Annotated[list[AllocationSpec], Meta(max_length=16)]],
        Meta(examples=[{"tee-black": [{"name": "app", "qty": 100, "channels": ["app"]}]}]),
    ] | UnsetType = UNSET
    """Presale allocations by SKU, each list replaced whole for the next claim: a listed
    one keeps what holds and sales took from it, one left out returns its units to the
    shared pool; [] removes them all."""
    bundles: Annotated[dict[BundleName, BundleSpec | None], Meta(
        max_length=64, examples=[{"tee-pack": {"lines": [{"sku": "tee-black", "qty": 2}]},
                                  "old-pack": None}])] | UnsetType = UNSET
    """Presale bundles by name, each added or replaced whole for the next claim (holds
    keep the lines and prices they were taken with); null removes one."""


class ClaimRequest(Struct, **_STRICT):
    """A claim of one SKU (`sku`, `qty`), of several at once (`lines`), or of a bundle the
    campaign defines (`bundle`): exactly one of the three."""
    sku: SkuId | UnsetType = UNSET
    qty: Qty | UnsetType = UNSET
    """Units of `sku` (default 1); a claim of lines gives each line's instead."""
    lines: BundleLines | UnsetType = UNSET
    """Several SKUs held together, all or nothing (each SKU once)."""
    bundle: BundleName | UnsetType = UNSET
    """A bundle of the campaign's spec, by name."""
    code: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    """A presale code: it lends the claim its batch's tier, and one use is spent."""


ClaimBody = Annotated[ClaimRequest, Meta(extra_json_schema={
    "examples": [{"sku": "tee-black", "qty": 1}], "oneOf": [
    {"required": ["sku"], "not": {"anyOf": [{"required": ["lines"]},
                                            {"required": ["bundle"]}]}},
    {"required": ["lines"], "not": {"anyOf": [{"required": ["qty"]}, {"required": ["sku"]},
                                              {"required": ["bundle"]}]}},
    {"required": ["bundle"], "not": {"anyOf": [{"required": ["qty"]}, {"required": ["sku"]},
                                               {"required": ["lines"]}]}}]})]
"""The claim body as the contract states it: exactly one of sku, lines and bundle."""


class StockDelta(Struct, **_STRICT):
    delta: Annotated[int, Meta(ge=-100_000_000, le=100_000_000,
                               extra_json_schema={"not": {"const": 0}})]
    """Non-zero: units to add, or (negative) available units to remove."""


ClaimStatus = Literal["held", "confirmed", "cancelled", "expired", "refunded", "transferred"]


class ClaimLineView(Struct, kw_only=True):
    claim_id: str
    """The line's own claim id: its tickets, refunds and transfers go by it."""
    sku: str
    qty: int
    price: int
    """Per unit, locked at claim time."""
    status: ClaimStatus


class ClaimView(Struct, kw_only=True):
    claim_id: str
    campaign_id: str
    sku: str
    qty: int
    status: ClaimStatus
    expires_at: datetime
    price: int | None = None
    created_at: datetime | None = None
    offer: bool = False
    """The hold is a waitlist offer: confirm it like any hold before it expires."""
    lines: list[ClaimLineView] | None = None
    """A claim of several SKUs (a bundle): each line, a claim of its own under the
    bundle's id; then `sku` is '', `qty` 1 and `price` the lines' sum."""
    bundle: str | None = None
    """The name of the spec's bundle it claimed (none for a claim of `lines`)."""


class WaitlistJoin(Struct, **_STRICT):
    sku: SkuId
    qty: Qty = 1


class WaitlistEntry(Struct, kw_only=True):
    campaign_id: str
    sku: str
    qty: int
    status: Literal["waiting", "offered", "left"]
    position: int | None = None
    """1 is next in line; null once offered or left."""
    joined_at: datetime
    offer: ClaimView | None = None
    """The hold made for you when units came back: confirm it before it expires."""


class WaitlistView(Struct, kw_only=True):
    entries: list[WaitlistEntry]


class QueueTicket(Struct, kw_only=True):
    campaign_id: str
    status: Literal["waiting", "admitted", "done"]
    """done: the turn has passed (used by a claim, or its window lapsed)."""
    position: int | None
    """Place in the queue; null before the opening for an early arrival
    (early arrivals are put in a random order at the opening)."""
    early: bool
    serving: int
    """How many tickets have been admitted so far."""
    ahead: int | None
    """Tickets to be admitted before yours (null until the lottery is drawn)."""
    estimated_wait_s: float | None
    """From position, serving counter and rate; null while admission is paused."""
    rate_per_s: float
    paused: bool
    early_arrivals: int = 0
    opens_at: datetime
    admitted_until: datetime | None = None
    admission_token: str | None = None
    """Present when admitted: send it as X-Admission-Token with the claim."""
    token_expires_at: datetime | None = None


class WaitingRoomStats(Struct, kw_only=True):
    tickets: int
    served: int
    active: int
    rate_per_s: float
    paused: bool


class SkuPublic(Struct, kw_only=True):
    sku: str
    price: int
    available: int
    next_wave_at: datetime | None = None


class PhasePublic(Struct, kw_only=True):
    name: str
    opens_at: datetime
    tiers: list[str] | None = None
    """null with segments null: everyone."""
    segments: list[str] | None = None


class CampaignPublic(Struct, kw_only=True):
    id: str
    name: str
    state: Literal["scheduled", "open", "paused", "sold_out", "closed"]
    opens_at: datetime
    closes_at: datetime
    skus: list[SkuPublic]
    phases: list[PhasePublic] = []
    """Presale access phases in force (empty: everyone from opens_at)."""
    bundles: dict[str, BundleSpec] = {}
    """Presale bundles in force, by name (`bundle` in a claim); PATCH may change them."""


class LiveSku(Struct, kw_only=True):
    sku: str
    available: int
    sold_out: bool
    """No units now and no wave still to come."""
    next_wave_at: datetime | None = None


class LiveState(Struct, kw_only=True):
    """One event of the live feed: the whole of what it shows, so any one event
    (the first after a reconnect included) is enough to draw the page."""
    campaign: str
    state: Literal["scheduled", "open", "paused", "sold_out", "closed"]
    skus: list[LiveSku]
    serving: int | None = None
    """The waiting room's serving counter: tickets up to this one are admitted
    (None: the campaign has no waiting room)."""


class AllocationStats(Struct, kw_only=True):
    """Presales: one allocation of a SKU as it stands (bundleops)."""
    name: str
    reserved: int
    """Units still reserved for its channels or tiers; 0 once returned to the shared pool."""
    returned: bool
    """Its unused units joined the shared pool (by ops, or its returns_at has passed)."""
    channels: list[str] | None = None
    tiers: list[str] | None = None
    returns_at: datetime | None = None


class SkuStats(Struct, kw_only=True):
    sku: str
    price: int
    available: int
    held: int
    sold: int
    released: int
    """Units, like available, held and sold (released: units that came in waves)."""
    pending_waves: int
    """Waves not yet released (a count of waves, not of units)."""
    pending_units: int
    """Units those pending waves will bring."""
    per_user: int | None
    revenue: int = 0
    """Gross: price x qty of every claim confirmed (at the price locked into its hold);
    refunds are counted apart, in the campaign's `refunds`."""
    allocations: list[AllocationStats] = []
    """Presales: its allocations in spec order; `available` less their `reserved` units
    is the shared pool."""


class CampaignStats(Struct, kw_only=True):
    id: str
    state: Literal["scheduled", "open", "paused", "sold_out", "closed"]
    skus: list[SkuStats]
    """Units per SKU, as they stand now."""
    claims_by_outcome: dict[str, int]
    """Requests and transitions counted once each, whatever their quantity, and never
    decremented: held (claims that placed a hold), confirmed, cancelled, expired,
    sold_out and limit_exceeded (claims refused), throttled, blocked,
    challenge_required, waitlist and waiting-room moves, coupon_claims. A claim of
    3 units is one `held`; units are in `skus`."""
    waitlist: int = 0
    events: int = 0
    fenced: bool = False
    waiting_room: WaitingRoomStats | None = None
    throttle: ThrottleSpec | None = None
    """The scalper throttling in force (null: none)."""
    refunds: list[SkuRefunds] = msgspec.field(default_factory=list)
    """Refunded units and amounts per SKU (only SKUs with a refund)."""
    checkins: dict[str, int] = msgspec.field(default_factory=dict)
    """A ticketed sale's check-ins by gate."""

    presale_codes: list[PresaleBatchView] = []
    """The campaign's presale-code batches and their usage."""
    segments: dict[str, int] = {}
    """Members of each audience segment ops uploaded."""


def to_ms(t: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class SkuSummary(Struct, kw_only=True):
    sku: str
    released: int
    available: int
    held: int
    sold: int
    pending_waves: int
    """Waves not yet released."""
    next_wave_at: datetime | None = None


class CampaignSummary(Struct, kw_only=True):
    """A campaign at a glance, as the admin campaign list shows it."""
    id: str
    name: str
    state: Literal["scheduled", "open", "paused", "sold_out", "closed"]
    opens_at: datetime
    closes_at: datetime
    skus: list[SkuSummary]
    waitlist: int
    """Users on the campaign's waitlists."""
    claims_total: int
    """Claims that placed a hold, ever (claims_by_outcome.held of the stats)."""


class CampaignList(Struct, kw_only=True):
    campaigns: list[CampaignSummary]


class StockLevel(Struct, kw_only=True):
    sku: str
    available: int


class Health(Struct, kw_only=True):
    status: str


class Readiness(Struct, kw_only=True):
    ready: bool
    checks: dict[str, bool]
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    """What does not decide readiness but an operator wants: the persister's state
    (ok, stalled, restarting, crash_loop), its lag and the supervised children."""
