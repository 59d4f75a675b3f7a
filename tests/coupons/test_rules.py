"""Coupon rules against a real server: cart lines, item/category scope, time
windows in the drop's zone (DST too), qualification and live template changes."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.coupons import rules
from stampede.domain.coupons.spec import (
    CartLine,
    CouponDropPatch,
    RedemptionRequest,
    TemplateSpec,
)
from stampede.errors import ValidationError
from stampede.state import keys, records
from tests.coupons.helpers import drop_spec, merchant

DAY_MS = 86_400_000
TEMPLATES = {
    # 满3000减500 on drinks, cakes excluded
    "drinks": {"kind": "threshold_off", "face_value": 500, "threshold": 3000, "valid_days": 30,
               "categories": ["drinks"], "exclude_items": ["gift-card"]},
    "latte2": {"kind": "percent_off", "face_value": 5000, "percent": 50, "valid_days": 30,
               "items": ["latte"], "min_qty": 2},
    "plain": {"kind": "fixed_off", "face_value": 700, "valid_days": 30},
    "pack": {"kind": "pack", "face_value": 400, "item": "tea", "uses": 3, "valid_days": 30,
             "categories": ["drinks"]},
}


def line(item: str, category: str, qty: int, amount: int) -> CartLine:
    return CartLine(item=item, category=category, qty=qty, amount=amount)


CART = [line("latte", "drinks", 2, 1800), line("mocha", "drinks", 1, 1400),
        line("cake", "food", 1, 2500), line("gift-card", "drinks", 1, 5000)]


def spec(**t: object) -> TemplateSpec:
    return msgspec.convert({"kind": "fixed_off", "face_value": 100, "valid_days": 1, **t},
                           TemplateSpec)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


# -- pure rules ----------------------------------------------------------------

def test_category_threshold_counts_qualifying_lines_only() -> None:
    t = msgspec.convert(TEMPLATES["drinks"], TemplateSpec)
    assert [i for i, x in enumerate(CART) if rules.qualifies(t, x)] == [0, 1]
    total, per_line = rules.order_discounts(10_700, CART, {"d": t})
    assert total == {"d": 500} and per_line["d"] == [282, 218, 0, 0]  # 1800:1400
    short = CART[:1] + CART[2:]  # 1800 of drinks: below 3000 though the order is 9300
    assert rules.fit(t, 9300, short).reason == "threshold"
    assert rules.fit(t, 9300, None).reason == "lines_required"
    assert rules.fit(t, 2500, [CART[2]]).reason == "no_qualifying_lines"


def test_min_qty_and_percent_of_qualifying_lines() -> None:
    t = msgspec.convert(TEMPLATES["latte2"], TemplateSpec)
    assert rules.fit(t, 900, [line("latte", "drinks", 1, 900)]).reason == "min_qty"
    total, per_line = rules.order_discounts(10_700, CART, {"l": t})
    assert total == {"l": 900} and per_line["l"] == [900, 0, 0, 0]


def test_stacked_coupons_share_the_lines_left() -> None:
    plain = msgspec.convert(TEMPLATES["plain"], TemplateSpec)
    drinks = msgspec.convert(TEMPLATES["drinks"], TemplateSpec)
    lines = [line("latte", "drinks", 1, 3000), line("cake", "food", 1, 500)]
    total, per_line = rules.order_discounts(3500, lines, {"a": plain, "b": drinks})
    # threshold judged before any discount; plain (700) first over both lines
    assert total == {"a": 700, "b": 500}
    assert per_line["a"] == [600, 100] and per_line["b"] == [500, 0]
    assert sum(per_line["a"]) + sum(per_line["b"]) == 1200


def test_split_never_exceeds_a_line() -> None:
    assert rules.split(10, [0, 1, 2], [1, 1, 100]) == {0: 1, 1: 0, 2: 9}  # remainder first
    assert rules.split(4, [0, 1], [2, 2]) == {0: 2, 1: 2}
    assert rules.split(3, [0, 1, 2], [1, 1, 1]) == {0: 1, 1: 1, 2: 1}
    assert rules.split(0, [0], [5]) == {0: 0}


def test_lunch_hours_across_both_dst_changes_in_london() -> None:
    t = spec(hours=[{"start": "11:30", "end": "14:00"}])
    # winter: local = UTC
    w = rules.windows(t, "Europe/London", ms(2026, 1, 14, 9))
    assert (ms(2026, 1, 14, 11, 30), ms(2026, 1, 14, 14)) in w
    # summer (BST = UTC+1): the same wall clock is an hour earlier in UTC
    s = rules.windows(t, "Europe/London", ms(2026, 7, 14, 9))
    assert (ms(2026, 7, 14, 10, 30), ms(2026, 7, 14, 13)) in s
    # the week spanning 29 March: the day before at UTC, the day after at BST
    spring = rules.windows(t, "Europe/London", ms(2026, 3, 28, 9))
    assert (ms(2026, 3, 28, 11, 30), ms(2026, 3, 28, 14)) in spring
    assert (ms(2026, 3, 30, 10, 30), ms(2026, 3, 30, 13)) in spring


def test_a_window_in_the_spring_gap_starts_at_the_jump_and_the_repeated_hour_counts_twice(
        ) -> None:
    t = spec(hours=[{"start": "01:30", "end": "02:45"}])
    spring = rules.windows(t, "Europe/London", ms(2026, 3, 28, 12))
    assert (ms(2026, 3, 29, 1), ms(2026, 3, 29, 1, 45)) in spring  # 02:00 BST .. 02:45 BST
    autumn = rules.windows(t, "Europe/London", ms(2026, 10, 24, 12))
    # 01:30 BST (00:30 UTC) .. 02:45 GMT, the repeated 01:30-02:00 included
    assert (ms(2026, 10, 25, 0, 30), ms(2026, 10, 25, 2, 45)) in autumn


def test_weekend_only_in_new_york() -> None:
    t = spec(days=["sat", "sun"])
    now = ms(2026, 12, 2, 12)  # a Wednesday
    ok, nxt = rules.usable(rules.windows(t, "America/New_York", now), now)
    assert not ok and nxt == ms(2026, 12, 5, 5)  # Saturday 00:00 EST
    assert rules.usable(rules.windows(t, "America/New_York", ms(2026, 12, 6, 4, 59)),
                        ms(2026, 12, 6, 4, 59))[0]  # Sunday, 23:59 Saturday in New York


def test_bad_hours_and_zones_are_refused() -> None:
    assert rules.check_times(spec(hours=[{"start": "14:00", "end": "11:00"}])) is not None
    assert rules.check_times(spec(days=["mon", "mon"])) is not None
    with pytest.raises(ValidationError, match="IANA"):
        rules.zone("Mars/Olympus")


# -- through the script ---------------------------------------------------------

@pytest.fixture
async def drop(engine: Engine) -> Engine:
    await engine.define_campaign("d1", drop_spec(templates=TEMPLATES, per_user=50))
    return engine


async def _code(engine: Engine, tid: str, user: str = "alice", cid: str = "d1") -> str:
    r = await engine.coupons.claim(cid, user, tid)
    assert r.outcome is Outcome.OK, r
    return str(r.view.coupons[0].code)


def _req(code: str, lines: list[CartLine] | None = None, amount: int | None = None,
         order: str = "o1") -> RedemptionRequest:
    return RedemptionRequest(code=code, order_id=order, order_amount=amount, lines=lines)


async def test_cart_redemption_answers_each_line(drop: Engine) -> None:
    m = await merchant(drop)
    r = await drop.coupons.redeem(m, _req(await _code(drop, "drinks"), CART))
    assert r.outcome is Outcome.OK, r
    assert r.view.discount == 500 and r.view.order_amount == 10_700
    assert [x.discount for x in r.view.lines] == [282, 218, 0, 0]
    again = await drop.coupons.redeem(m, _req(r.view.coupon_id and
                                              (await _code(drop, "drinks", "bob")), CART))
    assert again.outcome is Outcome.OK
    # a single amount still works for an unscoped template, and not for a scoped one
    plain = await drop.coupons.redeem(m, _req(await _code(drop, "plain"), amount=3000))
    assert plain.outcome is Outcome.OK and plain.view.discount == 700 and plain.view.lines is None
    scoped = await drop.coupons.redeem(m, _req(await _code(drop, "drinks"), amount=9000))
    assert (scoped.outcome, scoped.reason) == (Outcome.CONFLICT, "lines_required")


async def test_cart_refusals(drop: Engine) -> None:
    m = await merchant(drop)
    code = await _code(drop, "latte2")
    cases = [([line("latte", "drinks", 1, 900)], "min_qty"),
             ([line("cake", "food", 3, 900)], "no_qualifying_lines")]
    for lines, reason in cases:
        r = await drop.coupons.redeem(m, _req(code, lines))
        assert (r.outcome, r.reason) == (Outcome.CONFLICT, reason)
    drinks = await _code(drop, "drinks")
    r = await drop.coupons.redeem(m, _req(drinks, [line("latte", "drinks", 1, 2999),
                                                   line("cake", "food", 1, 9000)]))
    assert (r.outcome, r.reason) == (Outcome.CONFLICT, "threshold")
    with pytest.raises(ValidationError, match="order_amount 100 is not the sum"):
        await drop.coupons.redeem(m, _req(code, CART, amount=100))
    with pytest.raises(ValidationError, match="order_amount is required"):
        await drop.coupons.redeem(m, _req(code))
    # nothing was used by the refusals
    ok = await drop.coupons.redeem(m, _req(code, [line("latte", "drinks", 2, 1800)]))
    assert ok.outcome is Outcome.OK and ok.view.discount == 900


async def test_the_same_order_again_replays_and_other_lines_mismatch(drop: Engine) -> None:
    m = await merchant(drop)
    code = await _code(drop, "pack")
    first = await drop.coupons.redeem(m, _req(code, CART, order="o9"))
    again = await drop.coupons.redeem(m, _req(code, CART, order="o9"))
    assert again.reason == "replayed" and again.view.redemption_id == first.view.redemption_id
    assert again.view.uses_left == 2 and again.view.lines == first.view.lines
    other = await drop.coupons.redeem(m, _req(code, CART[:2], order="o9"))
    assert other.outcome is Outcome.IDEMPOTENCY_MISMATCH


async def test_concurrent_cart_redemptions_of_a_pack_take_its_uses_once(drop: Engine) -> None:
    m = await merchant(drop)
    code = await _code(drop, "pack")
    answers = await asyncio.gather(*(drop.coupons.redeem(m, _req(code, CART, order=f"c{i}"))
                                     for i in range(12)))
    ok = [a for a in answers if a.outcome is Outcome.OK]
    assert len(ok) == 3 and {a.view.uses_left for a in ok} == {0, 1, 2}
    assert all(a.view.discount == 400 for a in ok)
    assert {a.reason for a in answers if a.outcome is not Outcome.OK} == {"used"}


async def test_time_windows_are_enforced_by_the_script_clock(engine: Engine) -> None:
    await engine.define_campaign("d2", drop_spec(templates={
        "lunch": {"kind": "fixed_off", "face_value": 300, "valid_days": 30,
                  "hours": [{"start": "11:30", "end": "14:00"}], "days": ["mon", "tue", "wed",
                                                                       "thu", "fri"]}},
        time_zone="Asia/Shanghai"))
    m = await merchant(engine)
    code = await _code(engine, "lunch", cid="d2")
    code2 = await _code(engine, "lunch", "bob", cid="d2")
    now = int(datetime.now(UTC).timestamp() * 1000)
    spans = rules.windows(msgspec.convert(
        {"kind": "fixed_off", "face_value": 300, "valid_days": 30,
         "hours": [{"start": "11:30", "end": "14:00"}],
         "days": ["mon", "tue", "wed", "thu", "fri"]}, TemplateSpec), "Asia/Shanghai", now)
    future = [a for a, _ in spans if a > now + 60_000]
    start, end = future[0], next(b for a, b in spans if a == future[0])
    # a minute before the window: refused, with when it opens
    await engine.set_clock_offset("d2", start - 60_000 - now)
    r = await engine.coupons.redeem(m, _req(code, amount=1000, order="t1"))
    assert (r.outcome, r.reason) == (Outcome.CONFLICT, "outside_hours")
    assert abs(r.params["next_ms"] - start) < 5_000 and 55_000 <= r.params["wait_ms"] <= 60_000
    await engine.set_clock_offset("d2", start + 60_000 - now)
    r = await engine.coupons.redeem(m, _req(code, amount=1000, order="t2"))
    assert r.outcome is Outcome.OK, r
    await engine.set_clock_offset("d2", end - now)  # the end is not in the window
    r = await engine.coupons.redeem(m, _req(code2, amount=1000, order="t3"))
    assert r.reason == "outside_hours"


async def test_qualification_answers_every_active_coupon(drop: Engine) -> None:
    for tid in ("drinks", "latte2", "plain", "pack"):
        await _code(drop, tid)
    await _code(drop, "plain", "bob")  # not alice's
    view = await drop.coupons.qualify("alice", [line("latte", "drinks", 1, 3200),
                                                line("cake", "food", 1, 800)])
    by = {q.template: q for q in view.coupons}
    assert view.cart_amount == 4000 and len(view.coupons) == 4
    assert (by["drinks"].fits, by["drinks"].discount) == (True, 500)
    assert [x.discount for x in by["drinks"].lines or []] == [500, 0]
    assert (by["latte2"].fits, by["latte2"].reason) == (False, "min_qty")
    assert (by["plain"].discount, by["pack"].discount) == (700, 400)
    assert [q.template for q in view.coupons][0] == "plain"  # the best first
    assert (await drop.coupons.qualify("carol", CART)).coupons == []


async def test_extending_validity_reaches_issued_coupons(drop: Engine) -> None:
    r = await drop.coupons.claim("d1", "alice", "plain")
    before = r.view.coupons[0].valid_to
    a = await drop.coupons.patch_drop("d1", msgspec.convert(
        {"templates": {"plain": {"valid_days": 45}}, "per_day": 500}, CouponDropPatch), "op")
    assert a.outcome is Outcome.OK, a
    assert a.view.coupons_extended == 1
    assert "cp_per_day" in a.view.changed and "cp_spec:plain" in a.view.changed
    wallet = await drop.coupons.wallet("alice")
    assert (wallet[0].valid_to - before).days == 15
    assert await drop.redis.zscore("{c:d1}:cexp", wallet[0].coupon_id) == \
        int(wallet[0].valid_to.timestamp() * 1000)
    with pytest.raises(ValidationError, match="valid_days may only grow"):
        await drop.coupons.patch_drop("d1", msgspec.convert(
            {"templates": {"plain": {"valid_days": 10}}}, CouponDropPatch), "op")
    with pytest.raises(ValidationError, match="extend valid_days, not valid_to"):
        await drop.coupons.patch_drop("d1", msgspec.convert(
            {"templates": {"plain": {"valid_to": "2030-01-01T00:00:00Z"}}}, CouponDropPatch),
            "op")
    missing = await drop.coupons.patch_drop("d1", msgspec.convert(
        {"templates": {"nope": {"valid_days": 99}}}, CouponDropPatch), "op")
    assert (missing.outcome, missing.reason, missing.view) == (Outcome.NOT_FOUND,
                                                               "no_template", "nope")
    assert (await drop.coupons.patch_drop("zz", CouponDropPatch(), "op")).reason == "no_drop"


async def test_a_narrowed_scope_keeps_what_was_issued(drop: Engine) -> None:
    m = await merchant(drop)
    old = await _code(drop, "drinks")
    a = await drop.coupons.patch_drop("d1", msgspec.convert(
        {"templates": {"drinks": {"categories": ["tea"]}}}, CouponDropPatch), "op")
    assert a.outcome is Outcome.OK
    new = await _code(drop, "drinks", "bob")
    r = await drop.coupons.redeem(m, _req(new, CART, order="n"))
    assert (r.outcome, r.reason) == (Outcome.CONFLICT, "no_qualifying_lines")
    r = await drop.coupons.redeem(m, _req(old, CART, order="o"))
    assert r.outcome is Outcome.OK and r.view.discount == 500
    # widening reaches everyone: the new coupon fits drinks again
    await drop.coupons.patch_drop("d1", msgspec.convert(
        {"templates": {"drinks": {"categories": ["tea", "drinks"]}}}, CouponDropPatch), "op")
    r = await drop.coupons.redeem(m, _req(new, CART, order="n2"))
    assert r.outcome is Outcome.OK, r


async def _narrow(drop: Engine, *categories: str) -> None:
    a = await drop.coupons.patch_drop("d1", msgspec.convert(
        {"templates": {"drinks": {"categories": list(categories)}}}, CouponDropPatch), "op")
    assert a.outcome is Outcome.OK


async def _issued(drop: Engine, user: str) -> tuple[str, str]:
    """A drinks coupon for user: (its code, its id)."""
    r = await drop.coupons.claim("d1", user, "drinks")
    assert r.outcome is Outcome.OK, r
    return str(r.view.coupons[0].code), r.view.coupons[0].coupon_id


async def _record(drop: Engine, coupon_id: str) -> records.CouponRecord:
    return records.COUPON.decode(await drop.redis.hget(keys.coupon_keys("d1").drop.cpn,
                                                       coupon_id))


async def test_revisions_in_one_millisecond_keep_their_order(drop: Engine) -> None:
    """Issue, change, issue, change, issue, all in one millisecond: each coupon still
    uses the revision it was issued under and the later ones, no earlier one."""
    m = await merchant(drop)
    first, first_id = await _issued(drop, "ann")  # revision 0: drinks
    await _narrow(drop, "drinks", "tea")  # revision 1: still fits the cart's drinks
    between, between_id = await _issued(drop, "bob")
    await _narrow(drop, "tea")  # revision 2: the cart's drinks no longer fit
    last, last_id = await _issued(drop, "cy")
    # Put every step in the same millisecond, as a busy server may: the coupons'
    # claim times and the changes' times (cp_hist) all read one instant.
    ks = keys.coupon_keys("d1")
    at = (await _record(drop, first_id)).claimed
    for coupon_id in (first_id, between_id, last_id):
        c = await _record(drop, coupon_id)
        c.claimed = at
        await drop.redis.hset(ks.drop.cpn, coupon_id, records.COUPON.encode(c))
    hist = msgspec.json.decode(await drop.redis.hget(ks.campaign.meta, "cp_hist:drinks"))
    assert len(hist) == 2
    await drop.redis.hset(ks.campaign.meta, "cp_hist:drinks",
                          msgspec.json.encode([[at, spec] for _until, spec in hist]))
    r = await drop.coupons.redeem(m, _req(first, CART, order="a"))
    assert r.outcome is Outcome.OK and r.view.discount == 500, r
    r = await drop.coupons.redeem(m, _req(between, CART, order="b"))
    assert r.outcome is Outcome.OK and r.view.discount == 500, r
    r = await drop.coupons.redeem(m, _req(last, CART, order="c"))
    assert (r.outcome, r.reason) == (Outcome.CONFLICT, "no_qualifying_lines")


async def test_a_coupon_stored_before_revisions_is_placed_by_its_time(drop: Engine) -> None:
    """A record written before the `rev` field (one field fewer) still reads, in Lua and
    Python, and is judged by its claim time as it always was."""
    m = await merchant(drop)
    old, coupon_id = await _issued(drop, "ann")
    ks = keys.coupon_keys("d1")
    c = await _record(drop, coupon_id)
    assert c.rev == 0
    older = records.COUPON.encode(c).rsplit(records.SEP, 1)[0]
    await drop.redis.hset(ks.drop.cpn, coupon_id, older)
    assert (await _record(drop, coupon_id)).rev is None
    await asyncio.sleep(0.003)  # (by time: the change must come in a later millisecond)
    await _narrow(drop, "tea")
    r = await drop.coupons.redeem(m, _req(old, CART, order="a"))
    assert r.outcome is Outcome.OK and r.view.discount == 500, r
    stored = records.COUPON.decode(await drop.redis.hget(ks.drop.cpn, coupon_id))
    assert (stored.uses, stored.rev) == (0, None)


async def test_a_change_between_pricing_and_the_script_is_priced_again(
        drop: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A widening lands after the engine read the rules and before the script ran:
    the script sees another revision, refuses, and the engine prices again."""
    m = await merchant(drop)
    code = await _code(drop, "latte2")
    read = drop.coupons.with_rules
    reads = 0

    async def racing(cid: str, mode: str, names: list[str]) -> Any:
        nonlocal reads
        found = await read(cid, mode, names)
        reads += 1
        if reads == 1:
            a = await drop.coupons.patch_drop("d1", msgspec.convert(
                {"templates": {"latte2": {"items": ["latte", "mocha"], "min_qty": 1}}},
                CouponDropPatch), "op")
            assert a.outcome is Outcome.OK
        return found

    monkeypatch.setattr(drop.coupons, "with_rules", racing)
    cart = [line("latte", "drinks", 2, 1800), line("mocha", "drinks", 1, 1400)]
    r = await drop.coupons.redeem(m, _req(code, cart))
    assert r.outcome is Outcome.OK and reads == 2
    assert r.view.discount == 1600 and [x.discount for x in r.view.lines] == [900, 700]


async def test_concurrent_patches_each_apply_once(drop: Engine) -> None:
    """Ten live changes at once: each bumps the revision once (read, change, write
    if unchanged), the history keeps every replaced revision."""
    answers = await asyncio.gather(*(drop.coupons.patch_drop("d1", msgspec.convert(
        {"templates": {"plain": {"min_qty": i + 1}}}, CouponDropPatch), f"op{i}")
        for i in range(10)))
    assert all(a.outcome is Outcome.OK for a in answers)
    rev, hist = await drop.redis.hmget("{c:d1}:meta", "cp_rev:plain", "cp_hist:plain")
    assert rev == "10" and len(msgspec.json.decode(hist)) == 10


async def test_no_window_before_expiry_says_never(engine: Engine) -> None:
    """A Monday-only coupon valid one day, claimed on another day: no window is
    left before it expires, so the refusal names no time (and qualification none)."""
    now = datetime.now(UTC)
    other = [d for d in rules.DAYS if d != rules.DAYS[now.weekday()]
             and d != rules.DAYS[(now.weekday() + 1) % 7]][0]
    await engine.define_campaign("d3", drop_spec(templates={
        "once": {"kind": "fixed_off", "face_value": 100, "valid_days": 1, "days": [other]}}))
    m = await merchant(engine)
    code = await _code(engine, "once", cid="d3")
    r = await engine.coupons.redeem(m, _req(code, amount=500, order="n1"))
    assert (r.outcome, r.reason, r.params) == (Outcome.CONFLICT, "outside_hours", {})
    (q,) = (await engine.coupons.qualify("alice", [line("a", "b", 1, 500)])).coupons
    assert (q.fits, q.reason, q.usable_at) == (False, "outside_hours", None)
