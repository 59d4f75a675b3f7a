"""Live template changes (coupon rules): what a patch makes of a template. Pure.

What a change may do, and what it means for coupons already issued
(docs/coupon-rules.md):
- validity may only grow (a later valid_to, more valid_days) and reaches every
  active coupon of the template (coupon_patch.lua rewrites their ends);
- scope (merchants, regions, items, categories, minimum quantity) and times
  (hours, days) apply to coupons issued from then on; a coupon issued earlier
  may still be used as any revision since its issue allows, so a narrowing
  never takes away what was issued and a widening reaches it;
- value terms (kind, face value, threshold, percent, uses, stacking) are fixed:
  the budget was counted with them.
"""

import msgspec

from stampede.domain.coupons.spec import TemplatePatch, TemplateSpec
from stampede.domain.models import to_ms
from stampede.errors import ValidationError

_SCOPE = ("merchants", "partner_group", "blocked_merchants", "regions", "items", "categories",
          "exclude_items", "exclude_categories", "min_qty", "hours", "days")


class Shortened(ValidationError):
    """A change that would shorten validity (or change its kind)."""


def patched(tid: str, old: TemplateSpec, patch: TemplatePatch) -> tuple[TemplateSpec,
                                                                       dict[str, int]]:
    """The template after `patch`, and its growth of validity for issued coupons
    ({"vt": ms, "vd": days}, -1 unchanged; empty when validity is unchanged)."""
    changes: dict[str, object] = {name: getattr(patch, name) for name in _SCOPE
                                  if getattr(patch, name) is not msgspec.UNSET}
    grow: dict[str, int] = {}
    if patch.valid_to is not None:
        if old.valid_to is None:
            raise Shortened(f"template {tid!r} is valid for valid_days after each claim: "
                            "extend valid_days, not valid_to")
        if to_ms(patch.valid_to) < to_ms(old.valid_to):
            raise Shortened(f"template {tid!r}: valid_to may only move later (now "
                            f"{old.valid_to.isoformat()})")
        changes["valid_to"] = patch.valid_to
        grow = {"vt": to_ms(patch.valid_to), "vd": -1}
    if patch.valid_days is not None:
        if old.valid_days is None:
            raise Shortened(f"template {tid!r} has a fixed window: extend valid_to, not "
                            "valid_days")
        if patch.valid_days < old.valid_days:
            raise Shortened(f"template {tid!r}: valid_days may only grow (now "
                            f"{old.valid_days})")
        changes["valid_days"] = patch.valid_days
        grow = {"vt": -1, "vd": patch.valid_days}
    return msgspec.structs.replace(old, **changes), grow
