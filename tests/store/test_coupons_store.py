"""Coupon events reach the store (SQLite and PostgreSQL) and pass the audit;
the audit finds what the coupon scripts forbid."""

import asyncio
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from stampede import Engine, Outcome
from stampede.domain.coupons.spec import RedemptionRequest
from stampede.durable.audit import audit
from stampede.durable.events import Event, from_entry
from stampede.durable.persister import Persister
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import records
from tests.coupons.helpers import FIVE_OFF, drop_spec, merchant
from tests.store.helpers import assert_store_matches_redis

TEMPLATES = {"five": {**FIVE_OFF, "transferable": True},
             "pack": {"kind": "pack", "face_value": 300, "item": "tea", "uses": 3,
                      "valid_days": 1}}


async def test_coupon_story_persists_and_audits_clean(sale: Engine, store: Store,
                                                      persister: Persister) -> None:
    await sale.define_campaign("d1", drop_spec(stock=50, templates=TEMPLATES, budget=20_000))
    m = await merchant(sale)
    claims = await asyncio.gather(*(sale.coupons.claim("d1", f"u{i}", sku)
                                    for i in range(20) for sku in ("five", "pack")))
    coupons = [c for r in claims if r.outcome is Outcome.OK for c in r.view.coupons]
    value = sum(c.face_value * c.uses for c in coupons)
    assert 20_000 - 900 < value <= 20_000  # the budget stopped the rest
    redeemed = [await sale.coupons.redeem(m, RedemptionRequest(
        code=c.code or "", order_id=f"o{i}", order_amount=2000)) for i, c in enumerate(coupons)]
    assert all(r.outcome is Outcome.OK for r in redeemed)
    for r in redeemed[:5]:
        await sale.coupons.rollback(r.view.redemption_id, "m1")
        await sale.coupons.rollback(r.view.redemption_id, "m1")
    gift = next(c for c in coupons if c.template == "five" and c.coupon_id not in
                {r.view.coupon_id for r in redeemed[5:]})
    token = (await sale.coupons.offer_gift(gift.coupon_id, "u0")).view
    if token is not None:
        assert (await sale.coupons.accept_gift(token.transfer_token, "friend")).outcome \
            is Outcome.OK
    await sale.set_clock_offset("d1", 2 * 86_400_000)
    assert await sale.sweep("d1") > 0
    await persister.drain()

    summary = await audit(store)
    assert summary["ok"], summary
    camp = summary["campaigns"]["d1"]
    assert camp["coupons"]["issued"] == len(coupons) and camp["coupons"]["rolled_back"] == 5
    assert camp["coupons"]["face_value_issued"] == value
    await assert_store_matches_redis(sale, store, "d1")
    async with store.engine.connect() as conn:
        rows = {r.coupon_id: r for r in await conn.execute(select(t.coupons))}
        reds = {r.redemption_id: r for r in await conn.execute(select(t.redemptions))}
    raw = await sale.redis.hgetall("{c:d1}:cpn")
    cpns = {k: records.COUPON.decode(v) for k, v in raw.items()}
    assert {k: (c.status, c.uses, c.owner) for k, c in cpns.items()} \
        == {k: (r.status, r.uses_left, r.user_id) for k, r in rows.items()}
    assert sum(r.status == "rolled_back" for r in reds.values()) == 5
    assert sum(r.discount for r in reds.values() if r.status == "redeemed") == \
        (await sale.coupons.stats("d1")).totals.discount_granted - \
        (await sale.coupons.stats("d1")).totals.discount_rolled_back  # type: ignore[union-attr]


_SPEC = msgspec.json.encode(drop_spec(stock=1, budget=1000)).decode()


def _events(*steps: tuple[str, dict[str, Any]]) -> list[Event]:
    return [from_entry("d1", f"{i + 1}-0", {"seq": str(i + 1), "type": etype, "ts": str(1000 + i),
                                            "epoch": "1", **{k: str(v) for k, v in data.items()}})
            for i, (etype, data) in enumerate(steps)]


def issued(coupon: str, value: int = 500, uses: int = 1) -> tuple[str, dict[str, Any]]:
    return ("coupon_issued", {"coupon": coupon, "user": "u", "template": "five", "claim": "c",
                              "uses": uses, "value": value, "valid_from": 0, "valid_to": 10**13,
                              "locator": "x"})


def redeemed(coupon: str, rid: str, left: int) -> tuple[str, dict[str, Any]]:
    return ("coupon_redeemed", {"coupon": coupon, "redemption": rid, "merchant": "m",
                                "order": "o", "amount": 1, "discount": 1, "uses_left": left,
                                "user": "u", "template": "five"})


def rolled_back(coupon: str, rid: str, left: int) -> tuple[str, dict[str, Any]]:
    return ("coupon_rolled_back", {"coupon": coupon, "redemption": rid, "merchant": "m",
                                   "discount": 1, "uses_left": left, "template": "five"})


DEFINE = ("campaign_defined", {"spec": _SPEC})
EXPIRED = ("coupon_expired", {"coupon": "a", "user": "u", "template": "five", "uses_left": 1})
CASES = {
    "clean": ([DEFINE, issued("a"), redeemed("a", "r1", 0), rolled_back("a", "r1", 1)], None),
    "over_budget": ([DEFINE, issued("a"), issued("b"), issued("c")], "over_budget"),
    "uses_negative": ([DEFINE, issued("a"), redeemed("a", "r1", 0), redeemed("a", "r2", -1)],
                      "uses_negative"),
    "expired_twice": ([DEFINE, issued("a"), EXPIRED, EXPIRED], "bad_coupon_transition"),
    "rolled_back_twice": ([DEFINE, issued("a"), redeemed("a", "r1", 0),
                           rolled_back("a", "r1", 1), rolled_back("a", "r1", 2)],
                          "rolled_back_twice"),
}


@pytest.mark.parametrize("case", CASES)
async def test_audit_finds_coupon_violations(store: Store, case: str) -> None:
    steps, kind = CASES[case]
    async with store.begin() as conn:
        await store_events(conn, store, _events(*steps))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["d1"]["violation_samples"]}
    if kind is None:
        assert summary["ok"], summary
    else:
        assert kind in kinds, summary


async def _coupon_state(redis: Any) -> dict[str, Any]:
    """Every coupon key of drop d1, wallets and claim answers included, by value."""
    out: dict[str, Any] = {}
    for key in sorted(await redis.keys("{c:d1}:*")):
        name = key.split(":", 2)[2]
        if name.split(":")[0] in ("cpn", "codes", "cday", "cstats", "redeems", "gifts",
                                  "cusers"):
            out[name] = await redis.hgetall(key)
        elif name == "cexp":
            out[name] = await redis.zrange(key, 0, -1, withscores=True)
        elif name.startswith("wallet"):
            out[name] = await redis.smembers(key)
        elif name.startswith("idem") and "coupon" in name:
            out[name] = await redis.get(key)
    meta = await redis.hgetall("{c:d1}:meta")
    out["meta"] = {k: v for k, v in meta.items() if k == "coupons" or k.startswith("cp_")}
    return out


async def test_recover_a_drop_from_the_store(sale: Engine, store: Store, persister: Persister,
                                             raw_redis: Any) -> None:
    from stampede.durable.recovery import recover_campaign
    await sale.define_campaign("d1", drop_spec(stock=50, templates=TEMPLATES, per_person=5,
                                               merchant_daily_cap=100))
    m = await merchant(sale)
    issued = []
    for i in range(12):
        r = await sale.coupons.claim("d1", f"u{i % 4}", "five" if i % 3 else "pack",
                                     idempotency_key=f"k{i}", identity=f"p{i % 3}")
        assert r.outcome is Outcome.OK, r
        issued += r.view.coupons
    reds = [await sale.coupons.redeem(m, RedemptionRequest(
        code=c.code or "", order_id=f"o{i}", order_amount=2000)) for i, c in
        enumerate(issued[:6])]
    await sale.coupons.rollback(reds[0].view.redemption_id, "m1")
    gifts = [c for c in issued[6:] if c.template == "five"]
    open_offer = (await sale.coupons.offer_gift(gifts[0].coupon_id,
                                                await _owner(sale, gifts[0].coupon_id))).view
    moved = (await sale.coupons.offer_gift(gifts[1].coupon_id,
                                           await _owner(sale, gifts[1].coupon_id))).view
    assert open_offer and moved
    assert (await sale.coupons.accept_gift(moved.transfer_token, "friend")).outcome is Outcome.OK
    await sale.set_clock_offset("d1", 86_400_000 + 1)  # the packs (1 day) expire
    assert await sale.sweep("d1") > 0
    await sale.set_clock_offset("d1", 0)
    before = await _coupon_state(raw_redis)
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "d1", 86_400_000)
    after = await _coupon_state(raw_redis)
    assert after == before
    # and the drop goes on: answers, codes and gifts as before the loss
    again = await sale.coupons.claim("d1", "u1", "five", idempotency_key="k1", identity="p1")
    assert again.outcome is Outcome.OK and \
        [c.coupon_id for c in again.view.coupons] == [issued[1].coupon_id]
    assert (await sale.claim("d1", "x", "five")).outcome is Outcome.NOT_FOUND  # still a drop
    fresh = await sale.coupons.redeem(m, RedemptionRequest(code=issued[10].code or "",
                                                           order_id="late", order_amount=900))
    assert fresh.outcome is Outcome.OK, fresh
    assert (await sale.coupons.accept_gift(open_offer.transfer_token, "pal")).outcome \
        is Outcome.OK
    await persister.drain()
    assert (await audit(store))["ok"]


async def _owner(sale: Engine, coupon_id: str) -> str:
    raw = await sale.redis.hget("{c:d1}:cpn", coupon_id)
    return records.COUPON.decode(str(raw)).owner
