"""A longer validity reaches a drop's issued coupons in bounded batches.

coupon_patch.lua queues the extension; coupon_extend.lua applies it a batch
per script call (HSCAN), resumable and idempotent; until a batch reaches a
coupon, the scripts that use it catch it up first. Real Valkey.
"""

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.coupons import service
from stampede.domain.coupons.service import Coupons
from stampede.domain.coupons.spec import CouponDropPatch
from stampede.state import keys, records
from tests.coupons.helpers import drop_spec, merchant
from tests.coupons.test_rules import _req

DAY_MS = 86_400_000
N = 1500
ONE_DAY = {"kind": "fixed_off", "face_value": 500, "valid_days": 1}


async def _issued(engine: Engine) -> dict[str, records.CouponRecord]:
    raw = await engine.redis.hgetall(keys.coupon_keys("d1").drop.cpn)
    return {cid: records.COUPON.decode(v) for cid, v in raw.items()}


async def _drop(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(stock=N + 10, templates={"day": ONE_DAY}))
    for start in range(0, N, 500):
        results = await engine.grants.grant("d1", "day", [f"u{i}" for i in
                                                         range(start, start + 500)],
                                            f"g{start}", "ops:test")
        assert all(r.outcome == "granted" for r in results)


def _three_days() -> CouponDropPatch:
    return msgspec.convert({"templates": {"day": {"valid_days": 3}}}, CouponDropPatch)


async def test_the_extension_runs_in_bounded_batches_and_reaches_every_coupon(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    await _drop(engine)
    before = await _issued(engine)
    monkeypatch.setattr(service, "EXTEND_BATCH", 100)
    answer = await engine.coupons.patch_drop("d1", _three_days(), "op")
    assert answer.outcome is Outcome.OK and answer.view.coupons_extended == N
    after = await _issued(engine)
    assert {c: r.vt for c, r in after.items()} == {
        c: r.vf + 3 * DAY_MS for c, r in before.items()}
    expiry = dict(await engine.redis.zrange(keys.coupon_keys("d1").drop.cexp, 0, -1,
                                            withscores=True))
    assert {c: int(s) for c, s in expiry.items()} == {c: r.vt for c, r in after.items()}
    meta = keys.campaign_keys("d1").meta
    assert await engine.redis.hmget(meta, "cp_grow", "cp_grow_cur") == [None, None]
    assert await engine.coupons.extend_validity("d1") == 0  # done: nothing twice


async def test_each_call_is_bounded_and_a_crashed_extension_resumes(engine: Engine) -> None:
    await _drop(engine)
    before = await _issued(engine)
    # The patch queues the extension; its batches are run here one by one, as if the
    # process had died right after the patch.
    real = Coupons.extend_validity
    Coupons.extend_validity = _nothing  # type: ignore[method-assign]
    try:
        answer = await engine.coupons.patch_drop("d1", _three_days(), "op")
    finally:
        Coupons.extend_validity = real  # type: ignore[method-assign]
    assert answer.outcome is Outcome.OK and answer.view.coupons_extended == 0
    assert await _issued(engine) == before  # nothing extended yet
    counts = []
    while True:
        n, more = await engine.scripts.run("coupon_extend", [*keys.coupon_keys("d1")], [100])
        counts.append(int(n))
        if not int(more):
            break
    assert sum(counts) == N and max(counts) <= 300 and len(counts) >= N // 300
    assert {c: r.vt for c, r in (await _issued(engine)).items()} == {
        c: r.vf + 3 * DAY_MS for c, r in before.items()}


async def _nothing(self: Coupons, cid: str, batch: int = 0) -> int:
    return 0


async def test_a_coupon_is_caught_up_before_its_batch_reaches_it(engine: Engine) -> None:
    """Between the patch and the batch: a coupon past its old validity but within the
    new one is redeemed, not expired, and the sweep expires none of them."""
    await _drop(engine)
    m = await merchant(engine)
    code = (await engine.coupons.claim("d1", "alice", "day")).view.coupons[0].code
    real = Coupons.extend_validity
    Coupons.extend_validity = _nothing  # type: ignore[method-assign]
    try:
        assert (await engine.coupons.patch_drop("d1", _three_days(), "op")).outcome \
            is Outcome.OK
    finally:
        Coupons.extend_validity = real  # type: ignore[method-assign]
    await engine.set_clock_offset("d1", 2 * DAY_MS)  # old validity (1 day) over, new not
    expired, _more = await engine.scripts.run("coupon_expire", [*keys.coupon_keys("d1")],
                                              [10_000])
    assert int(expired) == 0
    r = await engine.coupons.redeem(m, _req(str(code), amount=1000))
    assert r.outcome is Outcome.OK, r
    # The sweep caught every due coupon up (all of them): the batches have nothing left.
    assert await engine.coupons.extend_validity("d1") == 0
    statuses = [c.status for c in (await _issued(engine)).values()]
    assert statuses.count("active") == N and statuses.count("used") == 1
    await engine.set_clock_offset("d1", 4 * DAY_MS)  # and now the new validity is over
    assert await engine.coupons.expire("d1") == N
