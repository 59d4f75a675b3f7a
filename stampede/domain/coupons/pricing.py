"""Pricing an order or a cart with a coupon's rules (coupon rules): the template's
revisions a coupon may use, the best of them for an order, and a wallet
coupon's qualification. Pure: the reads are the engine's (service.py).

A coupon may use the revision of its template it was issued under and every
later one (docs/coupon-rules.md: a narrowed scope takes nothing away); of
those that fit the order, the one usable now with the largest discount.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import msgspec

from stampede.domain.coupons import rules
from stampede.domain.coupons.spec import (
    CartLine,
    LineDiscount,
    Qualification,
    QualifyReason,
    RedemptionRequest,
    TemplateSpec,
)
from stampede.domain.models import from_ms
from stampede.errors import ValidationError
from stampede.state.records import CouponRecord


@dataclass(frozen=True)
class TemplateRules:
    spec: TemplateSpec
    rev: str
    history: tuple[tuple[int, TemplateSpec], ...]
    """(until ms, spec) of the revisions live changes replaced, oldest first."""
    time_zone: str
    now: int
    """The scripts' clock when the rules were read (ms)."""

    def for_coupon(self, c: CouponRecord) -> list[TemplateSpec]:
        """The revisions a coupon may use: the one it was issued under and every
        later one (a narrowed scope does not take away what was issued).

        history[i] is revision i (each change appends the one it replaced and
        bumps the revision), so the coupon's `rev` orders it strictly against
        every change, even one in the same millisecond; a record from before
        `rev` is placed by its claim time."""
        if c.rev is not None:
            return [t for _until, t in self.history[c.rev:]] + [self.spec]
        return [t for until, t in self.history if until > c.claimed] + [self.spec]


@functools.lru_cache(maxsize=1024)
def history(raw: str) -> tuple[tuple[int, TemplateSpec], ...]:
    """cp_hist:<template> (templates.py) decoded."""
    return tuple((int(until), _spec.decode(spec)) for until, spec in _hist_decoder.decode(raw))


_hist_decoder = msgspec.json.Decoder(list[tuple[int, str]])
_spec = msgspec.json.Decoder(TemplateSpec)


PickedRevision = str | tuple[int, list[int], str]
"""pick_revision's answer: the reason none fits, or (discount, per line, windows)."""


def qualification(coupon_id: str, cid: str, c: CouponRecord, r: TemplateRules, amount: int,
                  lines: Sequence[CartLine],
                  priced: dict[tuple[str, int], PickedRevision]) -> Qualification:
    """One coupon on a cart. `priced` remembers the answer per template and set of
    revisions: the coupons of one template in a wallet mostly share it."""
    def no(reason: str, usable_at: int | None = None) -> Qualification:
        return Qualification(coupon_id=coupon_id, campaign_id=cid, template=c.tpl,
                             fits=False, discount=0, reason=cast(QualifyReason, reason),
                             usable_at=None if usable_at is None else from_ms(usable_at))
    now = r.now
    if now >= c.vt:
        return no("expired")
    if now < c.vf:
        return no("not_yet_valid")
    key = (c.tpl, len(r.for_coupon(c)))
    best = priced.get(key)
    if best is None:
        best = priced[key] = pick_revision(r, c, None, amount, lines, "this", {})
    if isinstance(best, str):
        return no(best)
    off, per_line, spans = best
    if spans:
        open_now, next_start = rules.usable(pairs(spans), now)
        if not open_now:
            return no("outside_hours", next_start if next_start is not None
                      and next_start < c.vt else None)
    return Qualification(
        coupon_id=coupon_id, campaign_id=cid, template=c.tpl, fits=True, discount=off,
        lines=[LineDiscount(item=line.item, category=line.category, qty=line.qty,
                            amount=line.amount, discount=d)
               for line, d in zip(lines, per_line, strict=True)])


def order_total(req: RedemptionRequest) -> int:
    """The order's amount: order_amount, or the sum of its lines (both: they must agree)."""
    if req.lines is None:
        if req.order_amount is None:
            raise ValidationError("order_amount is required when the order has no lines")
        return req.order_amount
    total = sum(line.amount for line in req.lines)
    if req.order_amount is not None and req.order_amount != total:
        raise ValidationError(f"order_amount {req.order_amount} is not the sum of the lines' "
                              f"amounts ({total})")
    return total


def pick_revision(r: TemplateRules, coupon: CouponRecord,
                  scope: Callable[[TemplateSpec], bool] | None, amount: int,
                  lines: Sequence[CartLine] | None, key: str,
                  others: dict[str, TemplateSpec]) -> PickedRevision:
    """The best revision of a coupon's template for this order, as (discount, its
    share per line, the windows the script checks), or the reason none fits: the
    reason of the current revision (merchant scope, lines, threshold)."""
    now = r.now
    fitting: list[tuple[bool, int, list[int], str]] = []
    reason = ""
    for t in r.for_coupon(coupon):
        why = "merchant_scope" if scope is not None and not scope(t) \
            else rules.fit(t, amount, lines).reason
        if why:
            reason = why
            continue
        offs, shares = rules.order_discounts(amount, lines, {key: t, **others})
        windows = rules.windows(t, r.time_zone, now)
        open_now = not rules.timed(t) or rules.usable(windows, now)[0]
        fitting.append((open_now, offs[key], shares[key], rules.encode_windows(t, windows)))
    if not fitting:
        return reason
    open_now, off, per_line, spans = max(fitting, key=lambda f: (f[0], f[1]))
    if not open_now:  # none usable now: the script answers with the soonest window
        union = sorted(p for f in fitting for p in pairs(f[3]))
        spans = ",".join(f"{a},{b}" for a, b in union) or "0,0"
    return off, per_line, spans


def pairs(text: str) -> list[tuple[int, int]]:
    n = [int(x) for x in text.split(",") if x]
    return [(n[i], n[i + 1]) for i in range(0, len(n), 2) if n[i] < n[i + 1]]
