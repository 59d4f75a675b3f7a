"""Coupon rules: which cart lines a template applies to, its discount per line,
and when (local hours and days) it may be redeemed. Pure functions, no state.

Cart scope (docs/coupon-rules.md):
- a line qualifies when its item is in `items` or its category in `categories`
  (both null: every line), and neither is excluded;
- a scoped template (any of the four lists set) needs the order's lines; its
  threshold and `min_qty` count the qualifying lines only (满3000减500 on a
  category); an unscoped one counts the whole order, as before lines existed;
- each coupon's discount is taken from what is left of its qualifying lines
  (stacked coupons in discount.py's order) and split over them in proportion
  to what is left of each, the remainder to the earliest lines.

Time windows are decided on wall-clock time in the drop's zone; the engine
compiles them into UTC intervals [start, end) for the next days (a DST gap
starts a window at the jump, a repeated hour counts both times) and the
redemption script checks its own clock against them.
"""

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stampede.domain.coupons.discount import RANK
from stampede.domain.coupons.spec import CartLine, TemplateSpec
from stampede.errors import ValidationError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 8
"""Compiled windows reach this many local days ahead (a week and one)."""


def scoped(t: TemplateSpec) -> bool:
    return bool(t.items is not None or t.categories is not None or t.exclude_items
                or t.exclude_categories or t.min_qty is not None)


def qualifies(t: TemplateSpec, line: CartLine) -> bool:
    if line.item in t.exclude_items or line.category in t.exclude_categories:
        return False
    if t.items is None and t.categories is None:
        return True
    return bool((t.items is not None and line.item in t.items)
                or (t.categories is not None and line.category in t.categories))


@dataclass(frozen=True)
class Fit:
    """Whether a template fits an order before stacking: '' or the reason it does not."""
    reason: str
    qualifying: tuple[int, ...] = ()
    """Indexes of the qualifying lines (every line for an unscoped template)."""


def fit(t: TemplateSpec, amount: int, lines: Sequence[CartLine] | None) -> Fit:
    """Scope, minimum quantity and threshold of one template on one order."""
    if lines is None:
        if scoped(t):
            return Fit("lines_required")
        return Fit("" if amount >= t.threshold else "threshold")
    idx = tuple(i for i, line in enumerate(lines) if qualifies(t, line))
    if not scoped(t):
        return Fit("" if amount >= t.threshold else "threshold", idx)
    if not idx:
        return Fit("no_qualifying_lines")
    if t.min_qty is not None and sum(lines[i].qty for i in idx) < t.min_qty:
        return Fit("min_qty", idx)
    if sum(lines[i].amount for i in idx) < t.threshold:
        return Fit("threshold", idx)
    return Fit("", idx)


def split(off: int, idx: Sequence[int], left: Sequence[int]) -> dict[int, int]:
    """`off` over the lines `idx` in proportion to what is left of each (the
    remainder to the earliest lines, never more than a line has left)."""
    base = sum(left[i] for i in idx)
    if base == 0 or off == 0:
        return dict.fromkeys(idx, 0)
    shares = {i: off * left[i] // base for i in idx}
    rest = off - sum(shares.values())
    for i in idx:
        if rest == 0:
            break
        more = min(rest, left[i] - shares[i])
        shares[i] += more
        rest -= more
    return shares


def order_discounts(amount: int, lines: Sequence[CartLine] | None,
                    coupons: Mapping[str, TemplateSpec]
                    ) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Each coupon's discount (by key) on an order and its share per line (one
    share of the whole amount without lines); a coupon that does not fit takes 0.
    Stacking is the caller's check (discount.stacks)."""
    left = [line.amount for line in lines] if lines is not None else [amount]
    total = dict.fromkeys(coupons, 0)
    per_line = {k: [0] * len(left) for k in coupons}
    for key in sorted(coupons, key=lambda k: (RANK[coupons[k].kind], k)):
        t = coupons[key]
        f = fit(t, amount, lines)
        if f.reason:
            continue
        idx = f.qualifying if lines is not None else (0,)
        base = sum(left[i] for i in idx)
        if t.kind == "percent_off":
            off = min(base * (t.percent or 0) // 100, t.face_value)
        else:
            off = min(t.face_value, base)
        for i, share in split(off, idx, left).items():
            left[i] -= share
            per_line[key][i] = share
        total[key] = off
    return total, per_line


# -- time windows ---------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (ValidationError if there is none such)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValidationError(f"time_zone {name!r} is not an IANA time zone name") from e


def timed(t: TemplateSpec) -> bool:
    return t.hours is not None or t.days is not None


def _wall(hhmm: str) -> tuple[int, int]:
    h, m = hhmm.split(":")
    return int(h), int(m)


def check_times(t: TemplateSpec) -> str | None:
    """Why the template's hours make no sense, or None."""
    for h in t.hours or []:
        if _wall(h.start) >= _wall(h.end):
            return f"hours {h.start}-{h.end}: start must come before end (within one day)"
    if t.days is not None and len(set(t.days)) != len(t.days):
        return "days lists a day twice"
    return None


def _instant(day: date, hhmm: str, tz: ZoneInfo, fold: int) -> int:
    """UTC ms of the first instant whose wall time on `day` is `hhmm` (24:00: the
    next midnight); in a DST gap, the instant of the jump."""
    h, m = _wall(hhmm)
    if h == 24:
        day, h = day + timedelta(days=1), 0
    naive = datetime.combine(day, time(h, m))
    aware = naive.replace(tzinfo=tz, fold=fold)
    ms = int(aware.timestamp() * 1000)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None, fold=0) == naive:
        return ms
    # a gap: fold 0 lands after the jump, fold 1 before it; find the jump
    lo = int(naive.replace(tzinfo=tz, fold=1).timestamp() * 1000)
    hi = int(naive.replace(tzinfo=tz, fold=0).timestamp() * 1000)
    lo, hi = min(lo, hi), max(lo, hi)
    before = datetime.fromtimestamp(lo / 1000, tz).utcoffset()
    while hi - lo > 1000:
        mid = (lo + hi) // 2 // 1000 * 1000
        if mid <= lo:
            break
        if datetime.fromtimestamp(mid / 1000, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def windows(t: TemplateSpec, tz_name: str, now_ms: int) -> list[tuple[int, int]]:
    """The template's usable intervals [start, end) in UTC ms, merged and sorted,
    from the local day before `now_ms` to HORIZON_DAYS after; [] if untimed."""
    if not timed(t):
        return []
    return _windows(tuple((h.start, h.end) for h in t.hours or []) or (("00:00", "24:00"),),
                    tuple(t.days or DAYS), tz_name, now_ms // 3_600_000)


@functools.lru_cache(maxsize=4096)
def _windows(hours: tuple[tuple[str, str], ...], days: tuple[str, ...], tz_name: str,
             hour: int) -> list[tuple[int, int]]:
    tz = zone(tz_name)
    today = datetime.fromtimestamp(hour * 3600, tz).date()
    spans = []
    for n in range(-1, HORIZON_DAYS + 1):
        d = today + timedelta(days=n)
        if DAYS[d.weekday()] not in days:
            continue
        for start, end in hours:
            for fold in (0, 1):
                a, b = _instant(d, start, tz, fold), _instant(d, end, tz, fold)
                if a < b:
                    spans.append((a, b))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def usable(spans: Sequence[tuple[int, int]], now_ms: int) -> tuple[bool, int | None]:
    """(usable now, the next start if not: None when none within the horizon)."""
    for a, b in spans:
        if a <= now_ms < b:
            return True, None
        if a > now_ms:
            return False, a
    return False, None


def encode_windows(t: TemplateSpec, spans: Sequence[tuple[int, int]]) -> str:
    """The ARGV the redemption script reads: 'start,end,start,end...' ('' untimed;
    '0,0' timed without a window in the horizon)."""
    if not timed(t):
        return ""
    return ",".join(f"{a},{b}" for a, b in spans) or "0,0"
