"""Redemption, codes, stacking and rollback against a real server."""

import asyncio
import time

import pytest

from stampede import Engine, Outcome
from stampede.domain.coupons import codes
from stampede.domain.coupons.codes import CodeKeys
from stampede.domain.coupons.discount import order_discounts, stacks
from stampede.domain.coupons.spec import RedemptionRequest, TemplateSpec
from tests.coupons.helpers import FIVE_OFF, drop_spec, merchant

TEMPLATES = {
    "five": {**FIVE_OFF, "stacking_group": "cash", "combines_with": ["pct", "item"]},
    "mj": {"kind": "threshold_off", "face_value": 2000, "threshold": 10000, "valid_days": 30,
           "stacking_group": "cash", "combines_with": ["pct", "item"]},
    "pct": {"kind": "percent_off", "face_value": 1500, "percent": 20, "valid_days": 30,
            "stacking_group": "pct", "combines_with": ["cash", "item"]},
    "cup": {"kind": "exchange", "face_value": 1800, "item": "latte", "valid_days": 30,
            "stacking_group": "item", "combines_with": ["cash", "pct"]},
    "solo": {"kind": "fixed_off", "face_value": 100, "valid_days": 30},
    "pack": {"kind": "pack", "face_value": 1200, "item": "americano", "uses": 3,
             "valid_days": 30},
}


async def _coupon(engine: Engine, tid: str, user: str = "alice", cid: str = "d1") -> str:
    r = await engine.coupons.claim(cid, user, tid)
    assert r.outcome is Outcome.OK, r
    code = r.view.coupons[0].code
    assert code is not None
    return code


def _req(code: str, amount: int, order: str = "o1", also: list[str] | None = None
         ) -> RedemptionRequest:
    return RedemptionRequest(code=code, order_id=order, order_amount=amount,
                             codes_also_used=also or [])


@pytest.fixture
async def drop(engine: Engine) -> Engine:
    await engine.define_campaign("d1", drop_spec(templates=TEMPLATES, merchant_daily_cap=50))
    return engine


# -- stacking and thresholds: one table, pure and through the script --------

T = {k: TemplateSpec(**v) for k, v in TEMPLATES.items()}  # type: ignore[arg-type]

ORDERS = [
    # (order amount, codes, expected discount per code; None: the set does not stack)
    (3000, ["five"], {"five": 500}),
    (300, ["five"], {"five": 300}),                          # capped at what is left to pay
    (9999, ["mj"], {"mj": 0}),                               # threshold not reached
    (10000, ["mj"], {"mj": 2000}),
    (10000, ["pct"], {"pct": 1500}),                         # 20% = 2000, at most 1500
    (5000, ["pct"], {"pct": 1000}),
    (10000, ["mj", "pct"], {"mj": 2000, "pct": 1500}),       # 20% of 8000 = 1600 -> 1500
    (6000, ["five", "pct"], {"five": 500, "pct": 1100}),     # 20% of 5500
    (2000, ["cup", "five", "pct"], {"cup": 1800, "five": 200, "pct": 0}),
    (12000, ["cup", "mj", "pct"], {"cup": 1800, "mj": 2000, "pct": 1500}),
    (3000, ["five", "mj"], None),                            # same group, not self-combinable
    (3000, ["solo", "five"], None),                          # exclusive
    (3000, ["solo"], {"solo": 100}),
    (3000, ["pack"], {"pack": 1200}),
]


@pytest.mark.parametrize("amount,names,expected", ORDERS)
def test_discount_table(amount: int, names: list[str], expected: dict[str, int] | None) -> None:
    if expected is None:
        assert not stacks([T[n] for n in names])
        return
    assert stacks([T[n] for n in names])
    assert order_discounts(amount, {n: T[n] for n in names}) == expected


@pytest.mark.parametrize("amount,names,expected", ORDERS)
async def test_redemption_table(drop: Engine, amount: int, names: list[str],
                                expected: dict[str, int] | None) -> None:
    m = await merchant(drop)
    code = {n: await _coupon(drop, n) for n in names}
    for n in names:
        others = [code[o] for o in names if o != n]
        r = await drop.coupons.redeem(m, _req(code[n], amount, also=others))
        if expected is None:
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "stacking")
            continue
        if expected[n] == 0 and not T[n].threshold <= amount:
            assert (r.outcome, r.reason) == (Outcome.CONFLICT, "threshold")
            continue
        assert r.outcome is Outcome.OK, (n, r)
        assert r.view.discount == expected[n]


# -- codes ------------------------------------------------------------------

def test_codes_are_short_unambiguous_and_signed() -> None:
    keys = CodeKeys([("A", "a" * 32)])
    code = keys.static("2222ABCDEFGH")
    assert len(code) == 19 and not set(code) & set("01IO")
    assert keys.verify(code, 0) is not None
    assert keys.verify(code.lower(), 0) is not None
    assert keys.verify(f"{code[:5]}-{code[5:]}", 0) is not None
    for i in range(1, 19):  # any one character altered (a 2^-30 chance of a false match)
        altered = code[:i] + ("2" if code[i] != "2" else "3") + code[i + 1:]
        assert keys.verify(altered, 0) is None
    assert CodeKeys([("A", "b" * 32)]).verify(code, 0) is None      # another key
    assert keys.verify("B" + code[1:], 0) is None                     # unknown key id
    assert keys.verify(code + "2", 0) is None and keys.verify("", 0) is None


def test_rotating_keys_keeps_old_codes_until_retired() -> None:
    old = CodeKeys([("A", "a" * 32)])
    code = old.static("2222ABCDEFGH")
    rotated = CodeKeys([("B", "b" * 32), ("A", "a" * 32)])
    assert rotated.verify(code, 0) is not None
    assert rotated.static("2222ABCDEFGH").startswith("B")
    retired = CodeKeys([("B", "b" * 32)])
    assert retired.verify(code, 0) is None
    assert retired.verify(rotated.static("2222ABCDEFGH"), 0) is not None


def test_rotating_code_changes_with_the_step() -> None:
    keys = CodeKeys([("A", "a" * 32)])
    now = 1_000 * codes.STEP_MS
    c = keys.rotating("2222ABCDEFGH", 1_000)
    assert keys.verify(c, now) is not None and keys.verify(c, now).step == 1_000  # type: ignore[union-attr]
    assert keys.rotating("2222ABCDEFGH", 1_001) != c
    assert keys.verify(c, now + 3 * codes.STEP_MS) is None  # far outside the window


async def test_forged_altered_and_retired_codes_are_refused(drop: Engine) -> None:
    m = await merchant(drop)
    code = await _coupon(drop, "five")
    forged = CodeKeys([("A", "x" * 32)]).static(code[1:13])
    altered = code[:-1] + ("2" if code[-1] != "2" else "3")
    for bad in (forged, altered, "NOTACODE"):
        r = await drop.coupons.redeem(m, _req(bad, 1000))
        assert (r.outcome, r.reason) == (Outcome.NOT_FOUND, "bad_code")
    drop.coupons.keys = CodeKeys([("B", "b" * 32), ("A", "another-secret-" * 3)])
    assert (await drop.coupons.redeem(m, _req(code, 1000))).reason == "bad_code"
    del drop.coupons.keys  # back to the kept key
    assert (await drop.coupons.redeem(m, _req(code, 1000))).outcome is Outcome.OK


async def test_rotating_codes_work_for_a_minute(drop: Engine) -> None:
    m = await merchant(drop)
    r = await drop.coupons.claim("d1", "alice", "pack")
    coupon = r.view.coupons[0]
    shown = await drop.coupons.rotating_code(coupon.coupon_id, "alice")
    assert shown.outcome is Outcome.OK
    ok = await drop.coupons.redeem(m, _req(shown.view.code, 2000, order="o1"))
    assert ok.outcome is Outcome.OK and ok.view.uses_left == 2
    assert (await drop.coupons.rotating_code(coupon.coupon_id, "bob")).outcome \
        is Outcome.NOT_FOUND
    await drop.set_clock_offset("d1", 2 * codes.STEP_MS)  # the server is a minute on
    stale = await drop.coupons.redeem(m, _req(shown.view.code, 2000, order="o2"))
    assert (stale.outcome, stale.reason) == (Outcome.CONFLICT, "code_expired")
    step = int(time.time() * 1000) // codes.STEP_MS
    old = drop.coupons.keys.rotating(coupon.code[1:13], step - 3)  # type: ignore[index]
    assert (await drop.coupons.redeem(m, _req(old, 2000, order="o3"))).reason == "bad_code"


# -- redemption rules -------------------------------------------------------

async def test_pack_uses_and_idempotency_per_merchant_and_order(drop: Engine) -> None:
    m, m2 = await merchant(drop, "m1"), await merchant(drop, "m2")
    code = await _coupon(drop, "pack")
    first = await drop.coupons.redeem(m, _req(code, 2000, order="o1"))
    again = await drop.coupons.redeem(m, _req(code, 2000, order="o1"))
    assert first.outcome is Outcome.OK and again.view == first.view
    assert (await drop.coupons.redeem(m, _req(code, 2500, order="o1"))).outcome \
        is Outcome.IDEMPOTENCY_MISMATCH
    assert (await drop.coupons.redeem(m2, _req(code, 2000, order="o1"))).view.uses_left == 1
    assert (await drop.coupons.redeem(m, _req(code, 2000, order="o2"))).view.uses_left == 0
    used = await drop.coupons.redeem(m, _req(code, 2000, order="o3"))
    assert (used.outcome, used.reason) == (Outcome.CONFLICT, "used")
    (c,) = await drop.coupons.wallet("alice", status="used")
    assert c.uses_left == 0


async def test_merchant_scope_regions_and_block_list(engine: Engine) -> None:
    templates = {
        "listed": {**FIVE_OFF, "merchants": ["m1", "m2"], "blocked_merchants": ["m2"]},
        "partner": {**FIVE_OFF, "partner_group": "mall"},
        "north": {**FIVE_OFF, "regions": ["north"]},
    }
    await engine.define_campaign("d1", drop_spec(templates=templates))
    m1 = await merchant(engine, "m1", region="north")
    m2 = await merchant(engine, "m2", groups=["mall"])
    m3 = await merchant(engine, "m3", groups=["mall"], region="south")
    expect = {("listed", "m1"): True, ("listed", "m2"): False, ("listed", "m3"): False,
              ("partner", "m1"): False, ("partner", "m2"): True, ("partner", "m3"): True,
              ("north", "m1"): True, ("north", "m2"): False, ("north", "m3"): False}
    for (tid, mid), allowed in expect.items():
        code = await _coupon(engine, tid)
        m = {"m1": m1, "m2": m2, "m3": m3}[mid]
        r = await engine.coupons.redeem(m, _req(code, 1000))
        assert (r.outcome is Outcome.OK) == allowed, (tid, mid, r)
        if not allowed:
            assert r.reason == "merchant_scope"


async def test_validity_window(engine: Engine) -> None:
    later = {"kind": "fixed_off", "face_value": 100, "valid_from": "2099-01-01T00:00:00Z",
             "valid_to": "2099-02-01T00:00:00Z"}
    await engine.define_campaign("d1", drop_spec(templates={"five": FIVE_OFF, "later": later}))
    m = await merchant(engine)
    code = await _coupon(engine, "later")
    assert (await engine.coupons.redeem(m, _req(code, 1000))).reason == "not_yet_valid"
    code = await _coupon(engine, "five")
    await engine.set_clock_offset("d1", 31 * 86_400_000)
    r = await engine.coupons.redeem(m, _req(code, 1000))
    assert (r.outcome, r.reason) == (Outcome.CONFLICT, "expired")
    assert [v.template for v in await engine.coupons.wallet("alice", status="expired")] \
        == ["five"]


# -- races --------------------------------------------------------------------

async def test_two_merchants_redeeming_one_code_at_once(drop: Engine) -> None:
    ms = [await merchant(drop, f"m{i}") for i in range(8)]
    for _ in range(10):
        code = await _coupon(drop, "five")
        results = await asyncio.gather(*(drop.coupons.redeem(m, _req(code, 1000)) for m in ms))
        assert sum(r.outcome is Outcome.OK for r in results) == 1
        assert {r.reason for r in results if r.outcome is not Outcome.OK} == {"used"}


async def test_merchant_daily_cap_under_parallel_redemptions(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(stock=200, merchant_daily_cap=13))
    m, other = await merchant(engine, "m1"), await merchant(engine, "m2")
    codes_ = [await _coupon(engine, "five", f"u{i}") for i in range(40)]
    results = await asyncio.gather(*(engine.coupons.redeem(m, _req(c, 1000, order=f"o{i}"))
                                     for i, c in enumerate(codes_)))
    assert sum(r.outcome is Outcome.OK for r in results) == 13
    assert {r.reason for r in results if r.outcome is not Outcome.OK} == {"merchant_cap"}
    spare = [c for c, r in zip(codes_, results, strict=True) if r.outcome is not Outcome.OK]
    assert (await engine.coupons.redeem(other, _req(spare[0], 1000))).outcome \
        is Outcome.OK  # the cap is per merchant
    done = [r for r in results if r.outcome is Outcome.OK]
    back = await engine.coupons.rollback(done[0].view.redemption_id, "m1")
    assert back.outcome is Outcome.OK
    assert (await engine.coupons.redeem(m, _req(spare[1], 1000, order="again"))).outcome \
        is Outcome.OK  # the rollback gave the cap back
    assert (await engine.coupons.redeem(m, _req(spare[2], 1000, order="more"))).reason \
        == "merchant_cap"


async def test_rollback_restores_exactly_once(drop: Engine) -> None:
    m = await merchant(drop)
    code = await _coupon(drop, "pack")
    r = await drop.coupons.redeem(m, _req(code, 2000))
    rid = r.view.redemption_id
    assert (await drop.coupons.rollback(rid, "m2")).outcome is Outcome.NOT_FOUND
    results = await asyncio.gather(*(drop.coupons.rollback(rid, "m1") for _ in range(20)))
    assert all(x.outcome is Outcome.OK for x in results)
    assert sum(x.reason == "" for x in results) == 1
    (c,) = await drop.coupons.wallet("alice")
    assert c.uses_left == 3 and c.status == "active"
    stats = await drop.coupons.stats("d1")
    assert stats and (stats.totals.redeemed, stats.totals.rolled_back) == (1, 1)
    assert stats.merchants["m1"].rolled_back == 1
    # The same order may be redeemed again after its rollback? No: its answer is kept.
    again = await drop.coupons.redeem(m, _req(code, 2000))
    assert again.view.status == "rolled_back"
    assert (await drop.coupons.redeem(m, _req(code, 2000, order="o2"))).view.uses_left == 2


def test_malformed_coupon_keys_are_refused_at_start() -> None:
    from stampede.domain.config import checked
    from stampede.errors import ConfigError
    from stampede.settings import Settings
    for bad in ("nokid", "A:short", "0:" + "x" * 20, "AB:" + "x" * 20):
        with pytest.raises(ConfigError):
            checked(Settings.from_env({"STAMPEDE_COUPON_KEYS": bad}))
    keys = checked(Settings.from_env({"STAMPEDE_COUPON_KEYS": "B:" + "b" * 20 + ",A:" + "a" * 20}))
    assert CodeKeys.parse(keys.coupon_keys or "").active == "B"
