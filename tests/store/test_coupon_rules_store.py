"""Live template changes (coupon rules) reach the store (SQLite and PostgreSQL):
the event with its actor and before/after, the extended validity of issued
coupons in the projection, recovery of the changed templates, and the audit."""

from typing import Any

import msgspec
from sqlalchemy import select

from stampede import Engine, Outcome
from stampede.domain.coupons.spec import CartLine, CouponDropPatch, RedemptionRequest
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import records
from tests.coupons.helpers import drop_spec, merchant
from tests.store.test_coupons_store import DEFINE, _coupon_state, _events, issued

TEMPLATES = {"drinks": {"kind": "threshold_off", "face_value": 500, "threshold": 3000,
                        "valid_days": 10, "categories": ["drinks"]},
             "five": {"kind": "fixed_off", "face_value": 500, "valid_days": 10}}
CART = [CartLine(item="latte", category="drinks", qty=1, amount=3200)]
DAY_MS = 86_400_000


def _patch(raw: dict[str, Any]) -> CouponDropPatch:
    return msgspec.convert(raw, CouponDropPatch)


async def test_live_changes_persist_recover_and_audit(sale: Engine, store: Store,
                                                      persister: Persister,
                                                      raw_redis: Any) -> None:
    from stampede.durable.recovery import recover_campaign
    await sale.define_campaign("d1", drop_spec(stock=50, templates=TEMPLATES, per_user=10))
    m = await merchant(sale)
    old = [(await sale.coupons.claim("d1", f"u{i}", "drinks")).view.coupons[0]
           for i in range(4)]

    async def use(c: Any, order: str) -> None:
        r = await sale.coupons.redeem(m, RedemptionRequest(code=c.code or "", order_id=order,
                                                           lines=CART))
        assert r.outcome is Outcome.OK, r

    await use(old[0], "o0")
    await persister.drain()  # the projection's rows of old[0..3] are written
    await use(old[1], "o1")  # used in the change's own batch, before it
    old.append((await sale.coupons.claim("d1", "u4", "drinks")).view.coupons[0])  # ditto
    a = await sale.coupons.patch_drop("d1", _patch(
        {"templates": {"drinks": {"valid_days": 20, "categories": ["tea"]}}, "per_day": 40}),
        "ops-alice")
    assert a.outcome is Outcome.OK and a.view.coupons_extended == 3  # not the used ones
    new = (await sale.coupons.claim("d1", "u9", "drinks")).view.coupons[0]
    assert (new.valid_to - new.claimed_at).days == 20
    await persister.drain()

    async with store.engine.connect() as conn:
        ev = (await conn.execute(select(t.events).where(
            t.events.c.type == "coupon_drop_patched"))).one()
        rows = {r.coupon_id: r for r in await conn.execute(select(t.coupons))}
        used = (await conn.execute(select(t.events).where(
            t.events.c.type == "coupon_redeemed"))).first()
    assert used is not None  # the discount per line is in the event
    assert msgspec.json.decode(msgspec.json.decode(used.data)["lines"]) == \
        [["latte", "drinks", 1, 3200, 500]]
    data = msgspec.json.decode(ev.data)
    assert data["actor"] == "ops-alice"
    assert msgspec.json.decode(data["before"])["cp_per_day"] == "-1"
    assert msgspec.json.decode(data["after"])["cp_per_day"] == "40"
    # the projection extended the three still active (two rows written before the
    # change, one in its batch), not the two used ones; and it agrees with Redis
    for c in old:
        ends = int(c.claimed_at.timestamp() * 1000) + (10 if c in old[:2] else 20) * DAY_MS
        assert rows[c.coupon_id].valid_to_ms == ends, c.coupon_id
        raw = await sale.redis.hget("{c:d1}:cpn", c.coupon_id)
        assert records.COUPON.decode(str(raw)).vt == ends

    before = await _coupon_state(raw_redis)
    assert before["meta"]["cp_rev:drinks"] == "1" and before["meta"]["cp_per_day"] == "40"
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "d1", 86_400_000)
    assert await _coupon_state(raw_redis) == before
    # after recovery: the old coupon keeps drinks, the new one is tea only
    r = await sale.coupons.redeem(m, RedemptionRequest(code=old[2].code or "", order_id="o2",
                                                       lines=CART))
    assert r.outcome is Outcome.OK, r
    r = await sale.coupons.redeem(m, RedemptionRequest(code=new.code or "", order_id="o3",
                                                       lines=CART))
    assert r.reason == "no_qualifying_lines"
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["d1"]["coupons"]["live_changes"] == 1


def _patched(before_vd: int, after_vd: int) -> tuple[str, dict[str, Any]]:
    def tpl(vd: int) -> str:
        return msgspec.json.encode({"u": 1, "f": 500, "vf": -1, "vt": -1, "vd": vd,
                                    "x": 0, "g": 0}).decode()
    return ("coupon_drop_patched", {
        "actor": "op", "before": msgspec.json.encode({"cp_tpl:five": tpl(before_vd)}).decode(),
        "after": msgspec.json.encode({"cp_tpl:five": tpl(after_vd)}).decode()})


async def test_audit_finds_a_shortened_validity(store: Store) -> None:
    async with store.begin() as conn:
        await store_events(conn, store, _events(DEFINE, issued("a"), _patched(30, 40)))
    assert (await audit(store))["ok"]
    async with store.begin() as conn:
        await store_events(conn, store, _events(DEFINE, issued("a"), _patched(30, 40),
                                                _patched(40, 20))[3:])
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["d1"]["violation_samples"]}
    assert kinds == {"validity_shortened"}
