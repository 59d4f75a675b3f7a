"""Presales: a SKU's stock split into allocations (per channel, per tier) and a shared
pool, decided in the claim script (include/allocations.lua).

Meta fields (define_campaign writes them with the other optional meta; PATCH campaign
replaces a SKU's list live, patch_campaign.lua "alp:<sku>"):
  al                   '1' when any SKU has allocations (the claim script reads the
                       rest only then: a plain campaign pays nothing)
  al:<sku>             the SKU's allocations, ';'-joined "name/returns_ms/channels/tiers"
                       (channels and tiers ','-joined, '' for any; returns_ms 0: never)
  al:<sku>:<name>      units still reserved, -1 once returned to the shared pool
  alq:<sku>            each allocation's qty as defined or patched, "name:qty,..."
  al_next              the earliest returns_at still pending, ms ('0' none), that the
                       sweeper keeps (sweep.lua); '' after a define or a PATCH: rescan
A hold records what it took from allocations in its claim record (`alloc`) as
"name:n,..." so that a release gives the units back to them (include/common.lua).
"""

import re
from collections.abc import Mapping, Sequence

from stampede.domain.models import (
    AllocationSpec,
    AllocationStats,
    CampaignSpec,
    SkuSpec,
    from_ms,
    to_ms,
)
from stampede.errors import ValidationError

FLAG = "al"
_CHANNEL = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def check_channel(channel: str) -> str:
    if not _CHANNEL.match(channel):
        raise ValidationError("channel must match [A-Za-z0-9_-]{1,32}")
    return channel


def _units(sku: SkuSpec) -> int:
    return sum(w.qty for w in sku.waves)


def check(spec: CampaignSpec, opens_ms: int, closes_ms: int) -> None:
    """ValidationError naming the field: unique names, each for some channels or tiers,
    returning within the schedule, adding up to no more than the SKU's waves."""
    for i, sku in enumerate(spec.skus):
        if not sku.allocations:
            continue
        at = f"skus[{i}].allocations"
        if spec.coupons is not None:
            raise ValidationError(f"{at}: a coupon drop takes no allocations")
        if spec.waitlist is not None:  # an offer is made without the claimant's channel
            raise ValidationError(f"{at}: a campaign with allocations takes no waitlist")
        check_list(at, sku.allocations, opens_ms, closes_ms)
        total, stock = sum(a.qty for a in sku.allocations), _units(sku)
        if total > stock:
            raise ValidationError(f"{at}: the allocations add up to {total} units, more "
                                  f"than the {stock} units of SKU {sku.sku!r}'s waves")


def check_list(at: str, allocs: Sequence[AllocationSpec], opens_ms: int,
               closes_ms: int) -> None:
    """One SKU's allocations at `at` (a spec's, or a PATCH's): unique names, each for
    some channels or tiers, returning within the schedule."""
    seen: set[str] = set()
    for j, a in enumerate(allocs):
        if a.name in seen:
            raise ValidationError(f"{at}[{j}].name: {a.name!r} is listed twice")
        seen.add(a.name)
        if a.channels is None and a.tiers is None:
            raise ValidationError(f"{at}[{j}]: an allocation names channels or tiers "
                                  "(the units for everyone are the shared pool)")
        if a.returns_at is not None and not opens_ms < to_ms(a.returns_at) < closes_ms:
            raise ValidationError(f"{at}[{j}].returns_at must be between opens_at and "
                                  "closes_at")


def _qtys(allocs: Sequence[AllocationSpec]) -> str:
    """meta "alq:<sku>": each allocation's qty as defined or patched, "name:qty,..." (a
    PATCH changes reserved units by the change of qty)."""
    return ",".join(f"{a.name}:{a.qty}" for a in allocs)


def patch_value(allocs: Sequence[AllocationSpec]) -> str:
    """The value of a PATCH's "alp:<sku>" pair (patch_campaign.lua)."""
    return f"{_encode(allocs)}#{_qtys(allocs)}"


def patch_refusal(detail: str, field: str) -> ValidationError | None:
    """patch_campaign.lua's refusal of a SKU's allocations as a ValidationError naming
    the field; None for any other detail."""
    parts = detail.split(":")
    if parts[0] == "allocation_taken" and len(parts) == 4:
        return ValidationError(f"{field}.{parts[1]}[{parts[2]}].qty: holds and sales took "
                               f"{parts[3]} units of it already")
    if parts[0] == "allocations_over" and len(parts) == 4:
        return ValidationError(f"{field}.{parts[1]}: the allocations would reserve "
                               f"{parts[2]} units, more than the {parts[3]} units SKU "
                               f"{parts[1]!r} has available or still to come")
    return None


def _encode(allocs: Sequence[AllocationSpec]) -> str:
    return ";".join(f"{a.name}/{to_ms(a.returns_at) if a.returns_at else 0}/"
                    f"{','.join(a.channels or ())}/{','.join(a.tiers or ())}" for a in allocs)


def meta_fields(spec: CampaignSpec) -> dict[str, str]:
    """The allocations' meta fields, every SKU's written (a redefinition replaces all)."""
    fields = {FLAG: "1" if any(s.allocations for s in spec.skus) else "0",
              "al_next": ""}  # the sweeper finds the earliest returns_at again
    for s in spec.skus:
        fields[f"al:{s.sku}"] = _encode(s.allocations)
        fields[f"alq:{s.sku}"] = _qtys(s.allocations)
        for a in s.allocations:
            fields[f"al:{s.sku}:{a.name}"] = str(a.qty)
    return fields


def in_force(meta: Mapping[str, str], sku: str, now_ms: int) -> list[AllocationStats]:
    """A SKU's allocations as the meta holds them now (for stats). One whose returns_at
    has passed counts as returned: the sweeper returns it (its allocation_returned
    event) within one sweep interval, or the next claim of the SKU first."""
    found: list[AllocationStats] = []
    for part in filter(None, meta.get(f"al:{sku}", "").split(";")):
        name, returns, channels, tiers = part.split("/")
        reserved = int(meta.get(f"al:{sku}:{name}", "-1"))
        due = int(returns) > 0 and now_ms >= int(returns)
        returned = reserved < 0 or due
        found.append(AllocationStats(
            name=name, reserved=0 if returned else reserved, returned=returned,
            channels=channels.split(",") if channels else None,
            tiers=tiers.split(",") if tiers else None,
            returns_at=from_ms(int(returns)) if int(returns) > 0 else None))
    return found


def decode_patch(enc: str, qtys: str) -> list[tuple[str, int, list[str] | None,
                                                 list[str] | None]]:
    """A PATCH's allocations of one SKU from its campaign_patched event ("al:<sku>",
    "alq:<sku>"): (name, qty, channels, tiers) each, for the audit."""
    qty = {name: int(n) for name, _, n in (p.rpartition(":") for p in qtys.split(",") if p)}
    out: list[tuple[str, int, list[str] | None, list[str] | None]] = []
    for part in filter(None, enc.split(";")):
        name, _, channels, tiers = part.split("/")
        out.append((name, qty.get(name, 0), channels.split(",") if channels else None,
                    tiers.split(",") if tiers else None))
    return out
