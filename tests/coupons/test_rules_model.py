"""Random sequences of cart redemptions, qualifications, live scope changes and a
clock walking across a DST change agree with a pure-Python model of the rules.

The model is written independently of the engine's rules.py: a line qualifies
by a direct reading of the template, a time window is judged on the wall clock
of the drop's zone minute by minute (no compiled intervals), and a narrowed
scope is modelled as "every revision since the coupon's issue". The clock is
set to whole-minute + 17 s instants (never near a window's edge), in 47-minute
steps from a Friday before the last Sunday of March 2027 (Europe/London goes
to BST) onwards.
"""

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from stampede import Engine, Outcome, Settings
from stampede.domain.coupons.service import Merchant
from stampede.domain.coupons.spec import (
    CartLine,
    CouponDropPatch,
    MerchantSpec,
    RedemptionRequest,
)
from tests.coupons.helpers import drop_spec

ZONE = "Europe/London"
TZ = ZoneInfo(ZONE)
START_MS = int(datetime(2027, 3, 26, 9, 0, 17, tzinfo=UTC).timestamp() * 1000)
STEP_MS = 47 * 60_000
DAY_MS = 86_400_000
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEMPLATES: dict[str, dict[str, Any]] = {
    "cat": {"kind": "threshold_off", "face_value": 500, "threshold": 3000, "valid_days": 30,
            "categories": ["drinks"], "exclude_items": ["gift"]},
    "pct": {"kind": "percent_off", "face_value": 800, "percent": 20, "valid_days": 30,
            "items": ["latte", "mocha"], "min_qty": 2},
    "lunch": {"kind": "fixed_off", "face_value": 300, "valid_days": 30,
              "hours": [{"start": "11:00", "end": "14:00"}],
              "days": ["mon", "tue", "wed", "thu", "fri"]},
    "plain": {"kind": "pack", "face_value": 200, "item": "tea", "uses": 2, "valid_days": 30},
}
CATALOG = [("latte", "drinks"), ("mocha", "drinks"), ("tea", "drinks"), ("gift", "drinks"),
           ("cake", "food"), ("bun", "food")]
SCOPES = [["drinks"], ["food"], ["drinks", "food"]]
_ids = itertools.count()


@dataclass
class Coupon:
    coupon_id: str
    tpl: str
    code: str
    claimed: int
    uses: int
    revisions: list[dict[str, Any]] = field(default_factory=list)
    """The template's rules it may use: the one at its issue and every later one."""


def qualifying(t: dict[str, Any], lines: list[CartLine]) -> list[int]:
    out = []
    for i, x in enumerate(lines):
        if x.item in t.get("exclude_items", []):
            continue
        items, cats = t.get("items"), t.get("categories")
        if (items is None and cats is None) or x.item in (items or []) \
                or x.category in (cats or []):
            out.append(i)
    return out


def model_fit(t: dict[str, Any], lines: list[CartLine]) -> tuple[str, int, list[int]]:
    """(reason, discount, per line) of one template alone on a cart."""
    scoped = any(k in t for k in ("items", "categories", "exclude_items", "min_qty"))
    idx = qualifying(t, lines)
    if scoped and not idx:
        return "no_qualifying_lines", 0, []
    if sum(lines[i].qty for i in idx) < t.get("min_qty", 0):
        return "min_qty", 0, []
    base_for_threshold = sum(lines[i].amount for i in idx) if scoped \
        else sum(x.amount for x in lines)
    if base_for_threshold < t.get("threshold", 0):
        return "threshold", 0, []
    base = sum(lines[i].amount for i in idx)
    off = min(base * t["percent"] // 100, t["face_value"]) if t["kind"] == "percent_off" \
        else min(t["face_value"], base)
    shares = [0] * len(lines)
    if base:
        for i in idx:
            shares[i] = off * lines[i].amount // base
        rest = off - sum(shares)
        for i in idx:
            more = min(rest, lines[i].amount - shares[i])
            shares[i] += more
            rest -= more
    return "", off, shares


def open_at(t: dict[str, Any], ms: int) -> bool:
    local = datetime.fromtimestamp(ms / 1000, TZ)
    if "days" in t and DAYS[local.weekday()] not in t["days"]:
        return False
    if "hours" not in t:
        return True
    hhmm = f"{local.hour:02d}:{local.minute:02d}"
    return any(h["start"] <= hhmm < h["end"] for h in t["hours"])


def next_open(t: dict[str, Any], ms: int) -> int:
    m = (ms // 60_000 + 1) * 60_000
    while not open_at(t, m):
        m += 60_000
    return m


class RulesMachine(RuleBasedStateMachine):
    def __init__(self, redis_url: str, settings: Settings | None = None) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = Engine.from_url(redis_url, settings or Settings())
        self.run(self.engine.start())
        self.run(self.engine.redis.flushall())
        self.cid = f"rm-{next(_ids)}"
        self.run(self.engine.define_campaign(self.cid, drop_spec(
            stock=1000, per_user=1000, templates=TEMPLATES, time_zone=ZONE,
            campaign={"closes_at": "2030-01-01T00:00:00Z"})))
        creds = self.run(self.engine.coupons.put_merchant("m1", MerchantSpec(name="m1")))
        merchant = self.run(self.engine.coupons.merchant(creds.token))
        assert merchant is not None
        self.merchant: Merchant = merchant
        self.now = START_MS
        self._set_clock()
        self.current = {k: dict(v) for k, v in TEMPLATES.items()}
        self.coupons: list[Coupon] = []
        self.orders = itertools.count()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.engine.close())
        self.loop.close()

    def _set_clock(self) -> None:
        """Only here: the scripts' clock then runs on with real time (a few seconds
        per example), so issue and change times keep their real order."""
        real = int(datetime.now(UTC).timestamp() * 1000)
        self.run(self.engine.set_clock_offset(self.cid, self.now - real))

    @rule(tpl=st.sampled_from(sorted(TEMPLATES)))
    def claim(self, tpl: str) -> None:
        r = self.run(self.engine.coupons.claim(self.cid, "alice", tpl))
        assert r.outcome is Outcome.OK, r
        (v,) = r.view.coupons
        self.coupons.append(Coupon(v.coupon_id, tpl, str(v.code), self.now, v.uses_left,
                                   [dict(self.current[tpl])]))

    @rule(data=st.data(), n=st.integers(1, 10))
    def redeem(self, data: st.DataObject, n: int) -> None:
        if not self.coupons:
            return
        c = data.draw(st.sampled_from(self.coupons))
        lines = self._cart(data, n)
        r = self.run(self.engine.coupons.redeem(self.merchant, RedemptionRequest(
            code=c.code, order_id=f"o{next(self.orders)}", lines=lines)))
        event(f"redeem: {r.reason or 'ok'}{' (revised)' if len(c.revisions) > 1 else ''}")
        # the order of refusals: the cart rules (engine), then status, then time (script)
        fits = [(t, model_fit(t, lines)) for t in c.revisions]
        good = [(t, f) for t, f in fits if not f[0]]
        if not good:
            assert r.reason == fits[-1][1][0], (r, fits)
            return
        if c.uses == 0:
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "used"), r
            return
        usable = [(t, f) for t, f in good if open_at(t, self.now)]
        if not usable:
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "outside_hours"), r
            assert r.params["next_ms"] == min(next_open(t, self.now) for t, _ in good)
            return
        _t, (_, off, shares) = max(usable, key=lambda tf: tf[1][1])
        assert r.outcome is Outcome.OK, r
        assert r.view.discount == off and [x.discount for x in r.view.lines] == shares
        c.uses -= 1
        assert r.view.uses_left == c.uses

    @rule(data=st.data(), n=st.integers(1, 10))
    def qualify(self, data: st.DataObject, n: int) -> None:
        lines = self._cart(data, n)
        view = self.run(self.engine.coupons.qualify("alice", lines))
        got = {q.coupon_id: (q.fits, q.discount, q.reason) for q in view.coupons}
        expected = {}
        for c in self.coupons:
            if c.uses == 0:
                continue
            fits = [(t, model_fit(t, lines)) for t in c.revisions]
            good = [(t, f) for t, f in fits if not f[0]]
            usable = [(t, f) for t, f in good if open_at(t, self.now)]
            if not good:
                expected[c.coupon_id] = (False, 0, fits[-1][1][0])
            elif not usable:
                expected[c.coupon_id] = (False, 0, "outside_hours")
            else:
                expected[c.coupon_id] = (True, max(f[1] for _, f in usable), None)
        assert got == expected

    @rule(scope=st.sampled_from(SCOPES))
    def change_scope(self, scope: list[str]) -> None:
        a = self.run(self.engine.coupons.patch_drop(self.cid, msgspec.convert(
            {"templates": {"cat": {"categories": scope}}}, CouponDropPatch), "op"))
        assert a.outcome is Outcome.OK, a
        self.current["cat"] = {**self.current["cat"], "categories": scope}
        for c in self.coupons:
            if c.tpl == "cat":
                c.revisions.append(dict(self.current["cat"]))

    @rule(steps=st.integers(1, 12))
    def advance_clock(self, steps: int) -> None:
        self.now += steps * STEP_MS
        self._set_clock()

    def _cart(self, data: st.DataObject, n: int) -> list[CartLine]:
        out = []
        for _ in range(n):
            item, cat = data.draw(st.sampled_from(CATALOG))
            out.append(CartLine(item=item, category=cat, qty=data.draw(st.integers(1, 3)),
                                amount=data.draw(st.integers(0, 2500))))
        return out


def test_coupon_rules_agree_with_model(clean_redis: str) -> None:
    run_state_machine_as_test(
        lambda: RulesMachine(clean_redis),
        settings=settings(max_examples=50, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))
