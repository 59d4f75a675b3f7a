"""Every record Stampede keeps in Redis and every structured script argument, defined once.

Two families, both msgspec Structs whose field order *is* the layout:

- Stored records (`TextCodec`): one '|'-joined string per record (a claim,
  a waitlist entry, a coupon, a remembered first answer...), compact on
  purpose: a held claim costs a few dozen bytes. Ids and names never
  contain '|'; a `list[str]` field is joined with ','.
- Arguments and compiled config (`ARG_STRUCTS`): claims go to their script as
  ONE msgpack-encoded ARGV (a list of array-like Structs, unpacked by
  `cmsgpack.unpack`); the guard config is JSON in meta field `th` (the
  engine's client reads meta as text), with the short names it always had.

The Lua side is generated from these definitions (stampede/state/luagen.py):
`parse_<name>`/`format_<name>` for each record, `<name>_from` for each
argument, so no field order is written twice. tests/state/ proves the two
languages agree, shape by shape.
"""

import types
from typing import Any, Generic, TypeVar, Union, get_args, get_origin

import msgspec
from msgspec import Struct, field

T = TypeVar("T", bound=Struct)

SEP = "|"
LIST_SEP = ","


# -- stored records -------------------------------------------------------------


class ClaimRecord(Struct):
    """claims hash: claim_id -> the claim (a hold, or a sold or released one)."""
    status: str
    """held, confirmed, cancelled or expired"""
    user: str
    sku: str
    qty: int
    deadline: int
    """the hold's deadline (ms); a confirmed coupon claim's is its time"""
    price: int
    created: int
    # luacost: one record per hold (these were users-hash fields "~i|<claim>", "~a|<claim>")
    person: str = ""
    """presales: the hashed real person a per_person campaign counted it to ('' none)"""
    alloc: str = ""
    """presales: what it took from allocations, "name:n,..." ('' none)"""


class EntryRecord(Struct):
    """wlentries hash: "<user>|<sku>" -> the user's waitlist entry for the SKU."""
    status: str
    """waiting or offered"""
    seq: str
    """zero-padded join number: within a SKU, lexical order is join order"""
    qty: int
    joined: int
    claim: str
    """the offer's claim id, '' until offered"""


class WlMemberRecord(Struct):
    """waitlist zset member (every score 0, lexical order): the SKU first, so one
    SKU's members are one lexical range (wl_range in include/common.lua)."""
    sku: str
    seq: str
    user: str


class WaveRecord(Struct):
    """waves zset member, scored by its release time (ms)."""
    idx: int
    sku: str
    qty: int


class ClaimAnswerRecord(Struct):
    """An idempotency key's first answer to a claim (claim_batch.lua)."""
    fingerprint: str
    code: int
    claim_id: str
    """'' for a refusal, as are the three below"""
    deadline: int | None
    price: int | None
    created: int | None


class StockAnswerRecord(Struct):
    """An idempotency key's first answer to a stock adjustment (adjust_stock.lua)."""
    code: int
    available: int
    released: int


class CouponRecord(Struct):
    """cpn hash: coupon_id -> the coupon."""
    status: str
    """active, used or expired"""
    owner: str
    tpl: str
    """its template id"""
    uses: int
    """uses left"""
    vf: int
    """valid from (ms)"""
    vt: int
    """valid to (ms)"""
    loc: str
    """its locator: the code without key id and signature"""
    claimed: int
    gift: str
    """the hash of its open transfer token, '' if none"""
    claim: str
    # coupon rules: revisions in a strict order (a change and an issue may share a millisecond)
    rev: int | None = None
    """the template's revision (meta cp_rev) it was issued under; None in a record
    written before this field, which is judged by its claim time instead"""


class RedemptionRecord(Struct):
    """redeems hash: redemption_id -> the redemption."""
    status: str
    """redeemed or rolled_back"""
    coupon: str
    merchant: str
    order: str
    amount: int
    discount: int
    ts: int
    fingerprint: str
    tpl: str
    day: int


class GiftRecord(Struct):
    """gifts hash: token hash -> the transfer offer."""
    status: str
    """open or accepted"""
    coupon: str
    giver: str
    expires: int
    recipient: str
    nonce: str


class CouponAnswerRecord(Struct):
    """An idempotency key's first answer to a coupon claim (coupon_claim.lua)."""
    fingerprint: str
    code: int
    reason: str
    claim_id: str
    at: int
    coupons: list[str]


# -- after-sale: refunds ---------------------------------------------------------


class RefundRecord(Struct):
    """refunds hash: claim_id -> what has been refunded of the claim so far."""
    units: int
    amount: int


class RefundAnswerRecord(Struct):
    """A refund operation's first answer (refund.lua), kept under its idempotency key."""
    fingerprint: str
    code: int
    units: int
    """units this refund gave back"""
    left: int
    """units of the claim still refundable after it"""
    amount: int


# -- after-sale: tickets ---------------------------------------------------------


class TicketRecord(Struct):
    """tickets hash: ticket_id -> a ticket that is checked in, refunded or moved."""
    status: str
    """in (checked in), refunded, or moved (transferred alone to a new claim)"""
    gate: str
    """the gate that admitted it ('' if refunded)"""
    at: int
    """when: the scan's time (ms), or the refund's"""
    scanner: str


class TransferRecord(Struct):
    """xfers hash: token hash -> a sold claim's transfer offer."""
    status: str
    """open or accepted"""
    claim: str
    giver: str
    expires: int
    recipient: str
    new_claim: str
    """the recipient's claim, '' until accepted"""
    unit: int
    """after-sale one-ticket transfers: the ticket's number n in the claim; 0: the
    whole claim"""
# presales: presale codes
class PresaleBatchRecord(Struct):
    """pbatches hash: batch number -> a batch of presale codes (presale_codes_issue.lua)."""
    count: int
    """codes in the batch: serials 1..count"""
    uses: int
    """claims each code may make"""
    bind: int
    """1: a code is bound to the first user who claims with it"""
    tier: str
    """the audience tier a valid code lends its claim (access phases)"""
    created: int


class StoredAnswer(Struct, array_like=True):
    """The first answer of an idempotent confirm or cancel (Python only, JSON):
    (fingerprint, status, body)."""
    fingerprint: str
    status: int
    body: str


_KINDS = {str: "str", int: "int", int | None: "opt_int", list[str]: "list"}


def field_kind(tp: Any) -> str:
    """A field type as the codecs and the Lua generator know it."""
    kind = _KINDS.get(tp)
    if kind is None:
        raise TypeError(f"no text encoding for {tp!r}")
    return kind


class TextCodec(Generic[T]):
    """A stored record's '|'-joined text, both ways; `name` names its Lua helpers."""

    def __init__(self, kind: type[T], name: str, late: int = 0) -> None:
        self.kind = kind
        self.name = name
        self.late = late
        """the last `late` fields are newer than records still stored: Lua parses a
        record without them too (they read nil)"""
        self.fields = tuple((f.name, field_kind(f.type)) for f in msgspec.structs.fields(kind))
        self.defaulted = frozenset(f.name for f in msgspec.structs.fields(kind) if not f.required)
        """fields with a default: Lua may leave them out of a record's table"""

    def encode(self, record: T) -> str:
        parts = []
        for name, kind in self.fields:
            value = getattr(record, name)
            if kind == "list" and any(LIST_SEP in item or not item for item in value):
                raise ValueError(f"{self.name}.{name}: items must be non-empty, without "
                                 f"{LIST_SEP!r}: {value!r}")
            text = (LIST_SEP.join(value) if kind == "list"
                    else "" if value is None else str(value))
            if SEP in text:
                raise ValueError(f"{self.name}.{name} may not contain {SEP!r}: {text!r}")
            parts.append(text)
        return SEP.join(parts)

    def decode(self, raw: str) -> T:
        parts = raw.split(SEP)
        required = len(self.fields) - len(self.defaulted)  # defaulted fields come last
        if not required <= len(parts) <= len(self.fields):
            raise ValueError(f"{self.name}: {len(parts)} fields, {len(self.fields)} expected")
        # (a record written before its defaulted fields existed reads with their defaults)
        values = [_value(kind, text) for (_, kind), text in zip(self.fields, parts, strict=False)]
        return self.kind(*values)


def _value(kind: str, text: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "opt_int":
        return int(text) if text else None
    if kind == "list":
        return text.split(LIST_SEP) if text else []
    return text


# -- paid vouchers ---------------------------------------------------------------


class PaidRecord(Struct):
    """cusers hash: "pv|<claim_id>" -> a paid voucher's claim (its hold in claims)."""
    status: str
    """held (awaiting payment), paid, or refunded; a lapsed hold is the claim's
    status (its coupon ids and locators come from the claim id: coupon_pay.lua)"""
    payment: str
    """the payment reference given at confirm ('' before)"""
    refunded: int
    """the amount refunded (0 before)"""


# -- presales: a bundle held whole, one event (claim_bundle.lua) ---------------------


class BundleLineRecord(Struct):
    """One line of a bundle_held event's `items` ('|'-joined; the lines BUNDLE_ITEMS_SEP-
    joined in line order, each line's claim id the same place in the event's `lines`)."""
    sku: str
    qty: int
    price: int
    """the unit price locked into the line's hold"""
    alloc: str = ""
    """what the line took from the SKU's allocations, "name:n,..." ('' none)"""


def encode_bundle_items(items: "list[BundleLineRecord]") -> str:
    parts = [BUNDLE_LINE.encode(i) for i in items]
    if any(BUNDLE_ITEMS_SEP in p for p in parts):
        raise ValueError(f"bundle_line may not contain {BUNDLE_ITEMS_SEP!r}: {parts!r}")
    return BUNDLE_ITEMS_SEP.join(parts)


def decode_bundle_items(raw: str) -> "list[BundleLineRecord]":
    """A bundle_held event's lines ([] for an event of the older shape, without `items`)."""
    return [BUNDLE_LINE.decode(part) for part in raw.split(BUNDLE_ITEMS_SEP)] if raw else []


# -- luacost: a user's units in a campaign, one users-hash field per user ---------

UNITS_SEP = ","
UNITS_PAIR = ":"


def encode_units(by_sku: "dict[str, int]") -> str:
    """users hash: "<user>" -> the user's units held+sold by SKU, "<sku>:<n>,...".

    One field per user (the total is the sum): a per-SKU field beside a total
    cost ~40 bytes more per holding user. SKU ids never hold ':' or ','
    (stampede/state/keys.py); SKUs at 0 are left out, and a user at 0 has no
    field. include/common.lua's generated parse_units/format_units are the Lua side.
    """
    return UNITS_SEP.join(f"{sku}{UNITS_PAIR}{n}" for sku, n in by_sku.items() if n)


def decode_units(raw: "str | bytes | None") -> dict[str, int]:
    """A users field's units by SKU ({} for none)."""
    if not raw:
        return {}
    text = raw.decode() if isinstance(raw, bytes) else raw
    out: dict[str, int] = {}
    for part in text.split(UNITS_SEP):
        sku, _, n = part.partition(UNITS_PAIR)
        out[sku] = int(n)
    return out


CLAIM = TextCodec(ClaimRecord, "claim")
ENTRY = TextCodec(EntryRecord, "entry")
WL_MEMBER = TextCodec(WlMemberRecord, "wl_member")
WAVE = TextCodec(WaveRecord, "wave")
CLAIM_ANSWER = TextCodec(ClaimAnswerRecord, "claim_answer")
STOCK_ANSWER = TextCodec(StockAnswerRecord, "stock_answer")
COUPON = TextCodec(CouponRecord, "coupon", late=1)  # coupons live for weeks: `rev` came later
REDEMPTION = TextCodec(RedemptionRecord, "redemption")
GIFT = TextCodec(GiftRecord, "gift")
COUPON_ANSWER = TextCodec(CouponAnswerRecord, "coupon_answer")
REFUND = TextCodec(RefundRecord, "refund")
REFUND_ANSWER = TextCodec(RefundAnswerRecord, "refund_answer")
TICKET = TextCodec(TicketRecord, "ticket")
TRANSFER = TextCodec(TransferRecord, "transfer")
PAID = TextCodec(PaidRecord, "paid")  # paid vouchers

PRESALE_BATCH = TextCodec(PresaleBatchRecord, "presale_batch")

BUNDLE_LINE = TextCodec(BundleLineRecord, "bundle_line")
BUNDLE_ITEMS_SEP = ";"
"""Between the lines of a bundle_held event's `items` (no SKU or allocation name has it)."""

CAMPAIGN_RECORDS: tuple[TextCodec[Any], ...] = (CLAIM, ENTRY, WL_MEMBER, WAVE, CLAIM_ANSWER,
                                                STOCK_ANSWER, PRESALE_BATCH)
"""Pasted into every operation (include/common.lua)."""
COUPON_RECORDS: tuple[TextCodec[Any], ...] = (COUPON, REDEMPTION, GIFT, COUPON_ANSWER, PAID)
"""Pasted into coupon operations (include/coupons.lua)."""
REFUND_RECORDS: tuple[TextCodec[Any], ...] = (REFUND, REFUND_ANSWER, TICKET, TRANSFER)
"""Pasted into the after-sale operations: refund, checkin, transfers
(--@include refund_records)."""


# -- claim arguments (msgpack) -----------------------------------------------------


class GuardArg(Struct, array_like=True, frozen=True):
    """A claim's guard context (include/guard.lua): what the gateway knows of the
    request, a verified proof-of-work solution, and the KEYS slot of its nonce (the
    rest of its state is in fields of the campaign's guard hash, GuardKeys.state)."""
    device: str
    """'' when unknown, as network"""
    network: str
    age: int
    """account age (s), -1 unknown"""
    recent: int
    """campaigns claimed in lately, -1 unknown"""
    pow_bits: int
    """a verified solution's difficulty, -1 none"""
    pow_exp: int
    """its expiry (ms), -1 none"""
    k_nonce: int
    """KEYS slot of the solution's nonce key, 0 none"""


class ClaimArg(Struct, array_like=True, frozen=True):
    """One sale claim of a batch (claim_batch.lua)."""
    claim_id: str
    user: str
    sku: str
    qty: int
    idem_slot: int
    """KEYS index of its idempotency key, 0 if none"""
    admission: int
    """expiry (ms) of the admission token the engine verified, -1 if none"""
    fingerprint: str
    """the request body, for idempotency mismatch checks"""
    tiers: list[str] = []
    """presales: the audience tiers of the claimant's credential (include/phases.lua)"""
    code: str = ""
    """presales: the presale code's id "<batch>.<serial>" once its signature is verified,
    "?" for a code that is not genuine, "" for none (include/presale_codes.lua)"""
    k_code: int = 0
    """KEYS slot of the claimant's code-attempt limiter, 0 without a code"""
    k_code_device: int = 0
    """KEYS slot of the device's code-attempt limiter, 0 without a code or a device"""
    k_code_network: int = 0
    """KEYS slot of the network's code-attempt limiter, 0 without a code or a network"""
    identity: str = ""
    """presales: the claimant's hashed real-person identity ('' none), counted by the
    campaign's `per_person` limit"""
    channel: str = ""
    """presales: the credential's sales channel ('' none), for allocations"""
    guard: GuardArg | None = None
    """None: sent unguarded (the campaign was unguarded at its last reply); last, so
    that a nil leaves no hole in the array msgpack makes of the claim"""


# -- presales: bundles (claim_bundle.lua) --
class BundleLineArg(Struct, array_like=True, frozen=True):
    """One line of a bundle claim: a SKU and its units."""
    sku: str
    qty: int


class BundleArg(Struct, array_like=True, frozen=True):
    """One bundle claim of a batch (claim_bundle.lua): the claim's context as a sale
    claim carries it (its sku '' and qty 0) and the lines it takes together."""
    claim: ClaimArg
    name: str
    """the spec's bundle it claims ('' for a claim of lines)"""
    lines: list[BundleLineArg] = []
    """the lines of a claim of lines; [] for a bundle of the spec (claim_bundle.lua reads
    meta `bd`)"""


# Codes users type (promo and referral codes).
class CodeArg(Struct, array_like=True, frozen=True):
    """The code a coupon claim was made with (coupon_claim.lua resolves it)."""
    code: str
    """normalized: upper case, no spaces or dashes"""
    referrer: str
    """the member a referral code belonged to when the engine looked, '' otherwise"""
    referrer_wallet: int
    """KEYS slot of the referrer's wallet, 0 if none"""
    limiter: int
    """KEYS slot of the claimant's wrong-code limiter"""


# Points exchange.
class PointsArg(Struct, array_like=True, frozen=True):
    """The points debit a claim of a points-priced SKU was paid with."""
    debit: str
    """the debit id (the points service debited it once, idempotently)"""
    points: int
    """points debited: the SKU's price times qty"""


class CouponClaimArg(Struct, array_like=True, frozen=True):
    """One coupon claim of a batch (coupon_claim.lua)."""
    claim_id: str
    user: str
    sku: str
    qty: int
    wallet_slot: int
    """KEYS index of the claimant's wallet"""
    idem_slot: int
    admission: int
    identity: str
    """the hashed real person, '' if none"""
    seed: str
    """random seed of the coupon ids and locators"""
    fingerprint: str
    guard: GuardArg | None = None
    code: CodeArg | None = None
    """None: a claim of the SKU named, without a code"""
    points: PointsArg | None = None
    """None: no points paid (a points-priced SKU is then refused)"""


# -- the compiled guard config (meta `th`, JSON) -------------------------------------


class RateLimit(Struct, array_like=True, frozen=True):
    """GCRA: one request per interval, `burst` at once."""
    interval_ms: int
    burst: int


class AccountsLimit(Struct, array_like=True, frozen=True):
    window_ms: int
    challenge_above: int
    reject_above: int


class RiskCheck(Struct, omit_defaults=True, frozen=True):
    signal: str = field(name="s")
    """age, lapses or recent"""
    action: str = field(name="a")
    """challenge or reject"""
    above: float | None = field(default=None, name="gt")
    below: float | None = field(default=None, name="lt")


class PowDifficulty(Struct, array_like=True, frozen=True):
    base_bits: int
    step_bits: int
    max_bits: int


class GuardConfig(Struct, omit_defaults=True, frozen=True):
    """A campaign's compiled scalper guard, read once per claim script run."""
    pow: PowDifficulty = field(name="pw")
    user: RateLimit | None = field(default=None, name="u")
    device: RateLimit | None = field(default=None, name="d")
    network: RateLimit | None = field(default=None, name="n")
    campaign: RateLimit | None = field(default=None, name="c")
    accounts_per_device: AccountsLimit | None = field(default=None, name="ad")
    accounts_per_network: AccountsLimit | None = field(default=None, name="an")
    risk: list[RiskCheck] = field(default_factory=list, name="r")
    recent_window_ms: int | None = field(default=None, name="rw")
    """set when a risk check reads `recent`"""


_msgpack = msgspec.msgpack.Encoder()
_claims_dec = msgspec.msgpack.Decoder(list[ClaimArg])
_coupon_claims_dec = msgspec.msgpack.Decoder(list[CouponClaimArg])
_json = msgspec.json.Encoder()
_guard_config_dec = msgspec.json.Decoder(GuardConfig)


def encode_claims(claims: list[ClaimArg] | list[CouponClaimArg] | list[BundleArg]) -> bytes:
    """A batch's claims as the one ARGV their script unpacks."""
    return _msgpack.encode(claims)


def decode_claims(raw: bytes) -> list[ClaimArg]:
    return _claims_dec.decode(raw)


def decode_coupon_claims(raw: bytes) -> list[CouponClaimArg]:
    return _coupon_claims_dec.decode(raw)


def encode_guard_config(cfg: GuardConfig) -> str:
    return _json.encode(cfg).decode()


def decode_guard_config(raw: str) -> GuardConfig:
    return _guard_config_dec.decode(raw)


ARG_STRUCTS: tuple[type[Struct], ...] = (GuardArg, ClaimArg, CodeArg, PointsArg,
                                         CouponClaimArg, RateLimit,
                                         AccountsLimit, RiskCheck, PowDifficulty, GuardConfig,
                                         BundleLineArg, BundleArg)  # (bundles last)
"""The argument shapes Lua reads, in an order where each comes after those it holds."""


def nested(tp: Any) -> tuple[str, type[Struct] | None]:
    """('one' | 'optional' | 'list', the Struct) of a field type, or ('plain', None)."""
    if isinstance(tp, type) and issubclass(tp, Struct):
        return "one", tp
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and isinstance(inner[0], type) and issubclass(inner[0], Struct):
            return "optional", inner[0]
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], Struct):
        return "list", args[0]
    return "plain", None
