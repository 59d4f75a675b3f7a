"""Typed messages of the engine (msgspec Structs): specs in, views out.

The same types validate requests in the gateway and generate its OpenAPI
schema, so the contract is written once.
"""

from datetime import datetime, timezone
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

SkuId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="SKU id")]
Qty = Annotated[int, Meta(ge=1, le=1000)]
Limit = Annotated[int, Meta(ge=1, le=1_000_000)]
Price = Annotated[int, Meta(ge=0, le=10**12, description="smallest currency unit")]
TtlSeconds = Annotated[int, Meta(ge=1, le=7 * 86_400)]

_STRICT = {"forbid_unknown_fields": True, "kw_only": True}

# RFC 3339 date-time with an offset: `format` alone is only an annotation in
# JSON Schema, so the pattern tells generated clients what really parses.
Timestamp = Annotated[datetime, Meta(extra_json_schema={
    "pattern": r"^(19|20|21)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
               r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-](0\d|1[0-4]):[0-5]\d)$"})]


class Wave(Struct, **_STRICT):  # type: ignore[call-arg]
    at: Timestamp
    qty: Annotated[int, Meta(ge=1, le=100_000_000)]


class SkuSpec(Struct, **_STRICT):  # type: ignore[call-arg]
    sku: SkuId
    price: Price
    per_user: Limit | None = None
    """Per-user limit for this SKU, on top of the campaign's."""
    waves: list[Wave] = []


class Limits(Struct, **_STRICT):  # type: ignore[call-arg]
    per_user: Limit | None = None
    """Units one user may hold or have bought in the campaign."""
    max_per_claim: Qty = 10


class CampaignSpec(Struct, **_STRICT):  # type: ignore[call-arg]
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    opens_at: Timestamp
    closes_at: Timestamp
    skus: Annotated[list[SkuSpec], Meta(min_length=1, max_length=1000)]
    hold_ttl_s: TtlSeconds = 600
    limits: Limits = msgspec.field(default_factory=Limits)


class LimitsPatch(Struct, **_STRICT):  # type: ignore[call-arg]
    per_user: Limit | None | UnsetType = UNSET
    max_per_claim: Qty | UnsetType = UNSET


class CampaignPatch(Struct, **_STRICT):  # type: ignore[call-arg]
    state: Literal["open", "paused", "closed"] | UnsetType = UNSET
    opens_at: Timestamp | UnsetType = UNSET
    closes_at: Timestamp | UnsetType = UNSET
    hold_ttl_s: TtlSeconds | UnsetType = UNSET
    limits: LimitsPatch | UnsetType = UNSET
    sku_limits: dict[SkuId, Limit | None] | UnsetType = UNSET
    """Per-user limit by SKU; null removes it."""


class ClaimRequest(Struct, **_STRICT):  # type: ignore[call-arg]
    sku: SkuId
    qty: Qty = 1


class StockDelta(Struct, **_STRICT):  # type: ignore[call-arg]
    delta: Annotated[int, Meta(ge=-100_000_000, le=100_000_000,
                               extra_json_schema={"not": {"const": 0}})]
    """Non-zero: units to add, or (negative) available units to remove."""


ClaimStatus = Literal["held", "confirmed", "cancelled", "expired"]


class ClaimView(Struct, kw_only=True):
    claim_id: str
    campaign_id: str
    sku: str
    qty: int
    status: ClaimStatus
    expires_at: datetime
    price: int | None = None
    created_at: datetime | None = None


class SkuPublic(Struct, kw_only=True):
    sku: str
    price: int
    available: int
    next_wave_at: datetime | None = None


class CampaignPublic(Struct, kw_only=True):
    id: str
    name: str
    state: Literal["scheduled", "open", "paused", "sold_out", "closed"]
    opens_at: datetime
    closes_at: datetime
    skus: list[SkuPublic]


class SkuStats(Struct, kw_only=True):
    sku: str
    price: int
    available: int
    held: int
    sold: int
    released: int
    pending_waves: int
    per_user: int | None


class CampaignStats(Struct, kw_only=True):
    id: str
    state: Literal["scheduled", "open", "paused", "sold_out", "closed"]
    skus: list[SkuStats]
    claims: dict[str, int]
    """Claims by outcome: held, confirmed, cancelled, expired, sold_out, limit_exceeded."""
    waitlist: int = 0
    events: int = 0
    fenced: bool = False


def to_ms(t: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


class CampaignList(Struct, kw_only=True):
    campaigns: list[str]


class StockLevel(Struct, kw_only=True):
    sku: str
    available: int


class Health(Struct, kw_only=True):
    status: str


class Readiness(Struct, kw_only=True):
    ready: bool
    checks: dict[str, bool]
