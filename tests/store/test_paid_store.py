"""Paid vouchers reach the store, pass the audit, and are rebuilt by recovery."""

from typing import Any

import msgspec

from stampede import Engine, Outcome
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from stampede.state import keys
from tests.coupons.test_paid import PRICE, paid_spec
from tests.store.test_coupons_store import _coupon_state, _events

SPEC = paid_spec(stock=10, hold_ttl_s=60)


async def _sale_state(redis: Any) -> dict[str, Any]:
    k = keys.campaign_keys("d1")
    return {"stock": await redis.hgetall(k.stock), "claims": await redis.hgetall(k.claims),
            "users": {u: n for u, n in (await redis.hgetall(k.users)).items()
                      if n != "0"},  # recovery keeps no zero counts
            "deadlines": await redis.zrange(k.deadlines, 0, -1, withscores=True)}


async def test_paid_vouchers_persist_audit_clean_and_recover(sale: Engine, store: Store,
                                                             persister: Persister,
                                                             raw_redis: Any) -> None:
    from stampede.durable.recovery import recover_campaign
    await sale.define_campaign("d1", SPEC)
    paid = sale.coupons.paid
    kept = await sale.coupons.claim("d1", "ann", "coffee10", idempotency_key="k1")
    refunded = await sale.coupons.claim("d1", "bob", "coffee10", 2)
    lapsed = await sale.coupons.claim("d1", "cat", "coffee10")
    waiting = await sale.coupons.claim("d1", "dan", "coffee10")
    assert (await paid.confirm(kept.view.claim_id, "ann", "pay_a", "ck")).outcome is Outcome.OK
    await paid.confirm(refunded.view.claim_id, "bob", "pay_b")
    assert (await paid.refund(refunded.view.claim_id, "bob", "bob", "rk")).outcome is Outcome.OK
    # cat's hold lapses (the sweeper, its deadline moved to the past); dan's is still
    # held when the drop is recovered.
    await raw_redis.zadd(keys.campaign_keys("d1").deadlines, {lapsed.view.claim_id: 0})
    assert await sale.sweep("d1") == 1
    coupons, stock = await _coupon_state(raw_redis), await _sale_state(raw_redis)
    await persister.drain()

    summary = await audit(store)
    assert summary["ok"], summary
    c = summary["campaigns"]["d1"]["coupons"]
    assert (c["vouchers_held"], c["vouchers_paid"], c["vouchers_refunded"]) == (4, 2, 1)
    assert (c["voucher_revenue"], c["voucher_refunds"]) == (3 * PRICE, 2 * PRICE)

    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "d1", 86_400_000)
    assert await _coupon_state(raw_redis) == coupons
    assert await _sale_state(raw_redis) == stock
    # After recovery: the paid voucher answers its payment again, the refund stays
    # done, and the waiting hold can still be paid.
    again = await paid.confirm(kept.view.claim_id, "ann", "pay_a")
    assert again.outcome is Outcome.OK and again.view.status == "confirmed"
    assert (await paid.hold(refunded.view.claim_id, "bob")).view.status == "refunded"
    late = await paid.confirm(waiting.view.claim_id, "dan", "pay_d")
    assert late.outcome is Outcome.OK and len(late.view.coupons) == 1


def _voucher(claim: str) -> dict[str, Any]:
    return {"claim": claim, "user": "u", "sku": "coffee10", "qty": 1}


async def test_audit_finds_a_voucher_issued_unpaid_and_a_bad_refund(store: Store) -> None:
    spec = msgspec.json.encode(SPEC).decode()
    coupon = {"user": "u", "template": "coffee10", "uses": 10, "value": 4500,
              "valid_from": 0, "valid_to": 10**13, "locator": "x"}
    async with store.begin() as conn:
        await store_events(conn, store, _events(
            ("campaign_defined", {"spec": spec}),
            ("voucher_held", {**_voucher("d1.1"), "amount": PRICE, "value": 4500,
                              "deadline": 10**13}),
            ("coupon_issued", {"coupon": "d1.c1", "claim": "d1.1", **coupon}),
            ("voucher_refunded", {**_voucher("d1.1"), "actor": "u", "amount": PRICE,
                                  "value": 4500, "coupons": "d1.c1"})))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["d1"]["violation_samples"]}
    assert {"voucher_unpaid_issued", "voucher_bad_refund"} <= kinds


async def test_audit_finds_a_refunded_voucher_redeemed(store: Store) -> None:
    spec = msgspec.json.encode(SPEC).decode()
    coupon = {"user": "u", "template": "coffee10", "uses": 10, "value": 4500,
              "valid_from": 0, "valid_to": 10**13, "locator": "x"}
    async with store.begin() as conn:
        await store_events(conn, store, _events(
            ("campaign_defined", {"spec": spec}),
            ("voucher_held", {**_voucher("d1.1"), "amount": PRICE, "value": 4500,
                              "deadline": 10**13}),
            ("voucher_paid", {**_voucher("d1.1"), "amount": PRICE, "payment": "p"}),
            ("coupon_issued", {"coupon": "d1.c1", "claim": "d1.1", **coupon}),
            ("voucher_refunded", {**_voucher("d1.1"), "actor": "u", "amount": PRICE,
                                  "value": 4500, "coupons": "d1.c1"}),
            ("coupon_redeemed", {"coupon": "d1.c1", "redemption": "d1.r1", "merchant": "m",
                                 "order": "o", "amount": 900, "discount": 450,
                                 "uses_left": 9, "user": "u", "template": "coffee10"})))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["d1"]["violation_samples"]}
    assert "bad_coupon_transition" in kinds
