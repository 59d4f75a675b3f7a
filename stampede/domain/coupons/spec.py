"""Typed messages of coupons (msgspec Structs): drop specs in, views out.

Kept free of `stampede.domain.models` imports so that `CampaignSpec` can carry a
`CouponDropSpec` without an import cycle.
"""

from datetime import datetime
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

_STRICT = {"forbid_unknown_fields": True, "kw_only": True}

TemplateId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="template id")]
MerchantId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
                                 description="merchant id")]
Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Amount = Annotated[int, Meta(ge=0, le=10**12, description="smallest currency unit")]
Count = Annotated[int, Meta(ge=1, le=1_000_000_000)]
# RFC 3339 with an offset (the same pattern as engine.models.Timestamp).
Timestamp = Annotated[datetime, Meta(tz=True, extra_json_schema={
    "pattern": r"^(19|20|21)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
               r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-](0\d|1[0-4]):[0-5]\d)$"})]

_DAY = " per UTC day (resets at 00:00 UTC)"
UserDaily = Annotated[int, Meta(ge=1, le=1_000_000_000,
                                description="claims one user may make" + _DAY)]
DropDaily = Annotated[int, Meta(ge=1, le=1_000_000_000,
                                description="claims all users together may make" + _DAY)]
MerchantDaily = Annotated[int, Meta(ge=1, le=1_000_000_000, description=(
    "redemptions one merchant may make of this drop's coupons" + _DAY))]


# -- coupon rules: cart lines and time windows --
LineId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                             description="item or category id")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
LocalTime = Annotated[str, Meta(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$",
                                description="local time HH:MM (24:00 ends the day)")]


class Hours(Struct, **_STRICT):
    """A daily window [start, end) of local wall-clock time, within one day."""
    start: LocalTime
    end: LocalTime


CouponKind = Literal["fixed_off", "threshold_off", "percent_off", "exchange", "pack"]


class TemplateSpec(Struct, **_STRICT):
    """One kind of coupon. `face_value` is the amount off (fixed_off,
    threshold_off), the most a percent_off may take, or the value of the
    item (exchange, and each use of a pack)."""
    kind: CouponKind
    face_value: Annotated[int, Meta(ge=0, le=10**9, description="smallest currency unit")]
    threshold: Amount = 0
    """Least order amount the coupon applies to (满减: spend this, get face_value off)."""
    percent: Annotated[int, Meta(ge=1, le=100)] | None = None
    item: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    uses: Annotated[int, Meta(ge=1, le=1000)] = 1
    """Uses of a pack (寄杯); 1 for every other kind."""
    merchants: Annotated[list[MerchantId], Meta(max_length=1000)] | None = None
    """Only these merchants may redeem (null: any, unless partner_group is set)."""
    partner_group: Name | None = None
    """Only merchants of this partner group may redeem (cross-merchant coupons)."""
    blocked_merchants: Annotated[list[MerchantId], Meta(max_length=1000)] = []
    regions: Annotated[list[Name], Meta(max_length=1000)] | None = None
    """Only merchants in these regions may redeem (null: any region)."""
    stacking_group: Name = "default"
    combines_with: Annotated[list[Name], Meta(max_length=100)] = []
    """Groups this coupon may share an order with (empty: exclusive). Two codes
    combine only if each lists the other's group."""
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    valid_days: Annotated[int, Meta(ge=1, le=3650)] | None = None
    """Validity: the fixed window valid_from..valid_to, or valid_days from the claim."""
    transferable: bool = False
    gifts_count_to_limit: bool = False
    """A received gift counts against the recipient's per-user limit of the drop."""
    # -- coupon rules: cart scope and time windows (docs/coupon-rules.md) --
    items: Annotated[list[LineId], Meta(max_length=1000)] | None = None
    """Cart lines of these items qualify (with `categories`: lines of either)."""
    categories: Annotated[list[LineId], Meta(max_length=1000)] | None = None
    """Cart lines of these categories qualify (null with items null: every line)."""
    exclude_items: Annotated[list[LineId], Meta(max_length=1000)] = []
    exclude_categories: Annotated[list[LineId], Meta(max_length=1000)] = []
    min_qty: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    """Least total quantity of the qualifying lines."""
    hours: Annotated[list[Hours], Meta(min_length=1, max_length=4)] | None = None
    """Local times of day the coupon may be redeemed (null: any time)."""
    days: Annotated[list[Weekday], Meta(min_length=1, max_length=7)] | None = None
    """Local days of the week the coupon may be redeemed (null: every day)."""


# -- codes users type (promo and referral codes) --------------------------------

PromoCodeText = Annotated[str, Meta(pattern=r"^[A-Z0-9]{3,32}$", description=(
    "a public promo code: 3 to 32 upper-case letters and digits"))]


class PromoCodeSpec(Struct, **_STRICT):
    """A public code (printed on a poster): one code, many users."""
    sku: TemplateId
    """The SKU (template or pack) a claim with the code issues; such a SKU is
    claimable only with a code."""
    per_user: Annotated[int, Meta(ge=1, le=1000)] = 1
    """Claims of this code one user may make (each claim's qty counts)."""


class ReferralSpec(Struct, **_STRICT):
    """Members mint personal codes; a friend who claims with one gets `sku`,
    the member who shared it gets `referrer_sku`, once per friend (one person
    by the token's identity, whatever their accounts)."""
    sku: TemplateId
    referrer_sku: TemplateId
    per_referrer: Count | None = None
    """Friends one member may be rewarded for (null: no limit)."""


class WrongCodeLimit(Struct, **_STRICT):
    """How many wrong codes one user may try per hour (GCRA: the burst, then one
    every hour / per_hour). Past it every code claim of the user is refused
    THROTTLED, with the exact retry-after, right code or not."""
    per_hour: Annotated[int, Meta(ge=1, le=10_000)] = 10


class CouponDropSpec(Struct, **_STRICT):
    """What makes a campaign a coupon drop. Each campaign SKU is a template id
    (issues one coupon) or a key of `packs` (issues all of its list at once).
    The per-day limits count UTC days: they reset at 00:00 UTC, whatever the
    shoppers' time zone."""
    templates: Annotated[dict[TemplateId, TemplateSpec], Meta(min_length=1, max_length=100)]
    packs: Annotated[dict[TemplateId, Annotated[list[TemplateId],
                                                Meta(min_length=1, max_length=20)]],
                     Meta(max_length=100)] = {}
    per_user_per_day: UserDaily | None = None
    per_day: DropDaily | None = None
    budget: Amount | None = None
    """Most face value the drop may issue in total."""
    per_person: Count | None = None
    """Claims per real person across accounts (the token's `idh` identity hash);
    when set, a claim without an identity is refused."""
    merchant_daily_cap: MerchantDaily | None = None
    # -- codes users type
    promo_codes: Annotated[dict[PromoCodeText, PromoCodeSpec], Meta(max_length=1000)] = {}
    referral: ReferralSpec | None = None
    wrong_codes: WrongCodeLimit = field(default_factory=WrongCodeLimit)
    # -- points exchange
    points: Annotated[dict[TemplateId, Annotated[int, Meta(ge=1, le=10**9)]],
                      Meta(max_length=100)] = {}
    """SKUs priced in points (points per unit): a claim of one debits the member's
    points through the points service first (docs/points.md); nothing else claims it."""
    # -- paid vouchers
    paid: Annotated[list[TemplateId], Meta(max_length=100)] = []
    """SKUs sold for money at their SKU `price` (a paid voucher): a claim holds the
    units until the payment is confirmed, then issues (docs/paid-vouchers.md)."""
    # -- coupon rules --
    time_zone: Annotated[str, Meta(min_length=1, max_length=64,
                                   description="IANA time zone name")] = "UTC"
    """The zone of the templates' `hours` and `days` (DST-correct)."""


CouponStatus = Literal["active", "used", "expired", "transferred", "refunded"]


class CouponView(Struct, kw_only=True):
    coupon_id: str
    campaign_id: str
    template: str
    kind: CouponKind
    status: CouponStatus
    face_value: int
    threshold: int
    percent: int | None = None
    item: str | None = None
    uses_left: int
    uses: int
    valid_from: datetime
    valid_to: datetime
    claimed_at: datetime
    transferable: bool
    code: str | None = None
    """The coupon's signed code (owner only); at a till, show the rotating code."""


TypedCode = Annotated[str, Meta(min_length=1, max_length=64, description=(
    "a promo or referral code as typed (case, spaces and dashes do not matter)"))]


class CouponClaimRequest(Struct, **_STRICT):
    sku: TemplateId
    qty: Annotated[int, Meta(ge=1, le=1000)] = 1


class CodeClaimRequest(Struct, **_STRICT):
    """A claim with a promo or referral code: the code decides the SKU."""
    code: TypedCode
    qty: Annotated[int, Meta(ge=1, le=1000)] = 1


class ReferralCodeView(Struct, kw_only=True):
    campaign_id: str
    code: str
    """The member's personal code: the same on every request."""
    created: bool
    """Minted by this request (false: the member's existing code)."""


class CouponClaimView(Struct, kw_only=True):
    claim_id: str
    campaign_id: str
    sku: str
    qty: int
    coupons: list[CouponView]
    # -- paid vouchers
    status: Literal["issued", "held"] = "issued"
    """held: a paid voucher's claim awaiting its payment (confirm by hold_deadline)."""
    hold_deadline: datetime | None = None


PaidHoldStatus = Literal["held", "confirmed", "expired", "cancelled", "refunded"]


class PaidHoldView(Struct, kw_only=True):
    """A paid voucher's claim: its hold, payment and refund."""
    claim_id: str
    campaign_id: str
    sku: str
    qty: int
    status: PaidHoldStatus
    amount: int
    """The price paid (or to pay): the SKU's price x qty, in the smallest currency unit."""
    hold_deadline: datetime
    payment: str = ""
    """The payment reference given at confirm."""
    refunded_amount: int = 0
    coupons: list[str] = []


PaymentRef = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$",
                                 description="the payment provider's reference of the payment")]


class PaidConfirmRequest(Struct, **_STRICT):
    payment: PaymentRef


class Wallet(Struct, kw_only=True):
    coupons: list[CouponView]


class RotatingCode(Struct, kw_only=True):
    coupon_id: str
    code: str
    expires_at: datetime
    """Valid until about this time (one more step is tolerated for clock skew)."""


Code = Annotated[str, Meta(min_length=1, max_length=64)]


# -- coupon rules: carts --
MAX_LINES = 100


class CartLine(Struct, **_STRICT):
    item: LineId
    category: LineId
    qty: Annotated[int, Meta(ge=1, le=100_000)]
    amount: Annotated[int, Meta(ge=0, le=10**10, description="line total, smallest unit")]


Lines = Annotated[list[CartLine], Meta(min_length=1, max_length=MAX_LINES)]


class LineDiscount(Struct, kw_only=True):
    item: str
    category: str
    qty: int
    amount: int
    discount: int


class RedemptionRequest(Struct, **_STRICT):
    code: Code
    order_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:/#@-]{1,128}$")]
    order_amount: Amount | None = None
    """Required without `lines`; with lines, if given, it must equal their sum."""
    codes_also_used: Annotated[list[Code], Meta(max_length=20)] = []
    lines: Lines | None = None
    """The order's lines: item- and category-scoped coupons need them."""


class RedemptionView(Struct, kw_only=True):
    redemption_id: str
    coupon_id: str
    merchant_id: str
    order_id: str
    order_amount: int
    discount: int
    status: Literal["redeemed", "rolled_back"]
    uses_left: int
    redeemed_at: datetime
    lines: list[LineDiscount] | None = None
    """Each line's share of the discount (when the order came with lines)."""


# -- coupon rules: qualification and live template changes --
QualifyReason = Literal["expired", "not_yet_valid", "outside_hours",
                        "lines_required", "no_qualifying_lines", "min_qty", "threshold"]


class QualifyRequest(Struct, **_STRICT):
    lines: Lines


class Qualification(Struct, kw_only=True):
    coupon_id: str
    campaign_id: str
    template: str
    fits: bool
    discount: int
    """What it would take off this cart alone (0 when it does not fit)."""
    reason: QualifyReason | None = None
    lines: list[LineDiscount] | None = None
    usable_at: datetime | None = None
    """With outside_hours: when it is next usable."""


class QualifyView(Struct, kw_only=True):
    cart_amount: int
    coupons: list[Qualification]


class TemplatePatch(Struct, **_STRICT):
    """A live change of one template: validity may only grow; scope and times change
    for new coupons, and widen (never narrow) what issued coupons may do."""
    valid_to: Timestamp | None = None
    valid_days: Annotated[int, Meta(ge=1, le=3650)] | None = None
    merchants: Annotated[list[MerchantId], Meta(max_length=1000)] | None | UnsetType = UNSET
    partner_group: Name | None | UnsetType = UNSET
    blocked_merchants: Annotated[list[MerchantId], Meta(max_length=1000)] | UnsetType = UNSET
    regions: Annotated[list[Name], Meta(max_length=1000)] | None | UnsetType = UNSET
    items: Annotated[list[LineId], Meta(max_length=1000)] | None | UnsetType = UNSET
    categories: Annotated[list[LineId], Meta(max_length=1000)] | None | UnsetType = UNSET
    exclude_items: Annotated[list[LineId], Meta(max_length=1000)] | UnsetType = UNSET
    exclude_categories: Annotated[list[LineId], Meta(max_length=1000)] | UnsetType = UNSET
    min_qty: Annotated[int, Meta(ge=1, le=100_000)] | None | UnsetType = UNSET
    hours: Annotated[list[Hours], Meta(min_length=1, max_length=4)] | None | UnsetType = UNSET
    days: Annotated[list[Weekday], Meta(min_length=1, max_length=7)] | None | UnsetType = UNSET


class CouponDropPatch(Struct, **_STRICT):
    """`PATCH /admin/v1/campaigns/{cid}/coupons`: caps (null removes one) and templates."""
    per_user_per_day: UserDaily | None | UnsetType = UNSET
    per_day: DropDaily | None | UnsetType = UNSET
    merchant_daily_cap: MerchantDaily | None | UnsetType = UNSET
    templates: Annotated[dict[TemplateId, TemplatePatch], Meta(max_length=100)] = {}


class CouponDropPatched(Struct, kw_only=True):
    campaign_id: str
    changed: list[str]
    """The meta fields that changed (caps, templates)."""
    coupons_extended: int
    """Issued coupons whose validity the change extended."""


class GiftOffer(Struct, kw_only=True):
    coupon_id: str
    transfer_token: str
    expires_at: datetime


class GiftAccept(Struct, **_STRICT):
    transfer_token: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}\.[0-9a-f]{32}$")]


class MerchantSpec(Struct, **_STRICT):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    groups: Annotated[list[Name], Meta(max_length=100)] = []
    region: Name | None = None


class MerchantCredentials(Struct, kw_only=True):
    merchant_id: str
    name: str
    groups: list[str]
    region: str | None
    token: str
    """Shown once: the bearer token the merchant redeems with (stored hashed)."""


class CouponTotals(Struct, kw_only=True):
    issued: int = 0
    face_value_issued: int = 0
    redeemed: int = 0
    discount_granted: int = 0
    rolled_back: int = 0
    discount_rolled_back: int = 0
    expired: int = 0
    transferred: int = 0
    redemption_rate: float = 0.0
    """Redemptions kept (redeemed - rolled back) per coupon use issued."""


class CouponStats(Struct, kw_only=True):
    campaign_id: str
    budget: int | None
    budget_left: int | None
    totals: CouponTotals
    templates: dict[str, CouponTotals]
    merchants: dict[str, CouponTotals]
    days: dict[str, CouponTotals]
