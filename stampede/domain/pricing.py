"""Presale price steps: checked here, compiled into a SKU's stock field `<sku>.ps`.

A SKU's claim is priced inside the claim script (claim_batch.lua): the first
step whose every condition holds (before `until`, the SKU's taken units with
this claim within `first_units`, the claimant holding one of `tiers`) gives
the price, else the SKU's `price`. The price is locked into the hold and
carried through confirm, in the events and the store. PATCH campaign replaces
a SKU's steps live (patch_campaign.lua, "ps:<sku>"): the next claim is priced
by the new steps, a hold keeps the price it locked.

The field holds the steps in order, `price@until_ms@first_units@tier,tier;...`,
each condition '' when absent.
"""

from collections.abc import Sequence

from stampede.domain.models import PriceStep, SkuSpec, to_ms
from stampede.errors import ValidationError


def check(index: int, sku: SkuSpec, opens_ms: int) -> None:
    """ValidationError naming the field, unless the steps can each match: only the last
    has no condition, among steps of the same tiers `until`s and `first_units` rise down
    the list, and each `until` is after opens_at."""
    check_steps(f"skus[{index}].price_steps", sku.price_steps, opens_ms)


def check_steps(field: str, steps: Sequence[PriceStep], opens_ms: int) -> None:
    """As `check`, for the steps at `field` (a spec's, or a PATCH's by SKU)."""
    last_until: dict[frozenset[str], int] = {}
    last_units: dict[frozenset[str], int] = {}
    for j, step in enumerate(steps):
        audience = frozenset(step.tiers or ())
        at = f"{field}[{j}]"
        if step.until is None and step.first_units is None and step.tiers is None \
                and j != len(steps) - 1:
            raise ValidationError(f"{at}: a step without until, first_units or tiers matches "
                                  "every claim: only the last may have none")
        if step.until is not None:
            until = to_ms(step.until)
            if until <= opens_ms:
                raise ValidationError(f"{at}.until must be after opens_at")
            if audience in last_until and until <= last_until[audience]:
                raise ValidationError(f"{at}.until must be after the until of the earlier "
                                      "steps of the same tiers (price steps are listed in "
                                      "order)")
            last_until[audience] = until
        if step.first_units is not None:
            if audience in last_units and step.first_units <= last_units[audience]:
                raise ValidationError(f"{at}.first_units must be above the first_units of "
                                      "the earlier steps of the same tiers (price steps are "
                                      "listed in order)")
            last_units[audience] = step.first_units


def encode(steps: Sequence[PriceStep]) -> str:
    """The stock field `<sku>.ps` ('' for none)."""
    return ";".join(
        f"{s.price}@{'' if s.until is None else to_ms(s.until)}@"
        f"{'' if s.first_units is None else s.first_units}@{','.join(s.tiers or ())}"
        for s in steps)
