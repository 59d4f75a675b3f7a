"""Coupon drops split across shards (`shards > 1`): what they refuse, and their stats.

A sharded drop is N drops in Redis, one per shard (stampede/domain/shards.py), each
with a drop number of its own, so a coupon's code, its id and a redemption's id all
name the shard that holds it. A user's claims, wallet, per-user limits and
idempotency keys live on the user's shard; the SKUs' units are split and move
between shards like a sale's. What counts one total over the whole drop in one slot
is refused in the spec (docs/shards.md says why, field by field).
"""

from collections.abc import Mapping, Sequence

from stampede.domain.coupons.spec import CouponDropPatch, CouponDropSpec
from stampede.errors import ValidationError

_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    ("budget", "the face value issued is one total in one slot"),
    ("per_day", "the drop's claims of a day are one count in one slot"),
    ("per_person", "a person's accounts are served by different shards"),
    ("merchant_daily_cap", "a merchant's redemptions of a day reach every shard"),
    ("referral", "a referral rewards a member whose limits another shard may count"),
    ("points", "a points exchange is not supported on a sharded drop"),
    ("paid", "paid vouchers are not supported on a sharded drop"),
)


def check(drop: CouponDropSpec) -> None:
    """Refuse (ValidationError naming the field) what a sharded drop does not support."""
    for name, why in _UNSUPPORTED:
        value = getattr(drop, name)
        if value is not None and value != [] and value != {}:
            raise ValidationError(f"coupons.{name}: not supported with shards > 1 ({why})")
    for tid, t in drop.templates.items():
        if t.gifts_count_to_limit:
            raise ValidationError(
                f"coupons.templates.{tid}.gifts_count_to_limit: not supported with "
                "shards > 1 (the recipient's limit is counted on the shard that serves "
                "them, the gift stays on the giver's)")


def check_patch(patch: CouponDropPatch) -> None:
    """A live change of a sharded drop: the daily caps it cannot have are refused too."""
    for name in ("per_day", "merchant_daily_cap"):
        if isinstance(getattr(patch, name), int):  # UNSET or None (no cap) are fine
            raise ValidationError(f"{name}: not supported with shards > 1 (a sharded "
                                  "drop has no such cap: see coupons." + name + ")")


def merged_cstats(parts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The shards' coupon counters added up (every counter is a sum: issued, uses,
    value, redeemed, discount, ... per scope)."""
    total: dict[str, int] = {}
    for raw in parts:
        for field, value in raw.items():
            total[field] = total.get(field, 0) + int(value)
    return {field: str(v) for field, v in total.items()}
