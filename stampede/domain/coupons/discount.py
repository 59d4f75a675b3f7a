"""Thresholds, stacking and discounts of an order: pure functions, no state.

An order is evaluated as a whole, the same way whichever of its codes is
redeemed first, so each redemption gets its share of one answer:

1. every pair of codes must stack: each lists the other's stacking group in
   `combines_with` (an empty list makes a coupon exclusive);
2. a coupon applies only if the order amount (before any discount) reaches
   its threshold;
3. discounts apply in a fixed order, each capped at what is left to pay:
   items first (exchange, pack: the item's value), then amounts off
   (fixed_off, threshold_off), then percentages (percent_off, of what is
   left, rounded down, at most its face value); ties by code.
"""

from collections.abc import Mapping, Sequence

from stampede.domain.coupons.spec import TemplateSpec

RANK = {"exchange": 0, "pack": 0, "fixed_off": 1, "threshold_off": 1, "percent_off": 2}


def stack(a: TemplateSpec, b: TemplateSpec) -> bool:
    """May these two coupons share an order?"""
    return b.stacking_group in a.combines_with and a.stacking_group in b.combines_with


def stacks(templates: Sequence[TemplateSpec]) -> bool:
    return all(stack(templates[i], templates[j])
               for i in range(len(templates)) for j in range(i + 1, len(templates)))


def applies(t: TemplateSpec, order_amount: int) -> bool:
    return order_amount >= t.threshold


def order_discounts(order_amount: int, coupons: Mapping[str, TemplateSpec]) -> dict[str, int]:
    """Discount of each coupon (by its key) in one order; 0 where the threshold is not met.

    Stacking is the caller's check (`stacks`): this only does the arithmetic.
    """
    left = order_amount
    out = dict.fromkeys(coupons, 0)
    for key in sorted(coupons, key=lambda k: (RANK[coupons[k].kind], k)):
        t = coupons[key]
        if not applies(t, order_amount):
            continue
        if t.kind == "percent_off":
            off = min(left * (t.percent or 0) // 100, t.face_value)
        else:
            off = min(t.face_value, left)
        out[key] = off
        left -= off
    return out
