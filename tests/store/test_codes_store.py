"""Promo and referral codes reach the store, pass the audit and come back from it."""

from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from tests.coupons.test_codes import coded_drop
from tests.store.test_coupons_store import _coupon_state, _events

_codes_spec = msgspec.json.encode(coded_drop()).decode()


async def _codes_story(sale: Engine) -> list[Any]:
    """Promo claims (one with a key), referral codes minted and used, refusals."""
    answers = []
    for i in range(6):
        answers.append(await sale.coupons.claim("d1", f"u{i % 3}", "", code="SUMMER25",
                                                idempotency_key=f"k{i}"))
    ann = (await sale.coupons.referral_code("d1", "ann", "pa")).view.code
    bob = (await sale.coupons.referral_code("d1", "bob", "pb")).view.code
    for friend, code in (("f1", ann), ("f2", ann), ("f3", bob)):
        answers.append(await sale.coupons.claim("d1", friend, "", code=code,
                                                identity=f"p-{friend}"))
    answers.append(await sale.coupons.claim("d1", "f1", "", code=bob, identity="p-f1"))
    answers.append(await sale.coupons.claim("d1", "x", "", code="WRONG1"))
    return answers


async def test_codes_persist_audit_clean_and_recover(sale: Engine, store: Store,
                                                     persister: Persister,
                                                     raw_redis: Any) -> None:
    from stampede.durable.recovery import recover_campaign
    await sale.define_campaign("d1", coded_drop())
    answers = await _codes_story(sale)
    assert [a.outcome for a in answers] == [Outcome.OK] * 6 + [Outcome.OK] * 3 + [
        Outcome.LIMIT_EXCEEDED, Outcome.NOT_FOUND]
    before = await _coupon_state(raw_redis)
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["d1"]["coupons"]["issued"] == 6 + 3 + 3
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "d1", 86_400_000)
    assert await _coupon_state(raw_redis) == before
    # The drop goes on: limits remembered, answers replayed with their SKU.
    again = await sale.coupons.claim("d1", "u0", "", code="summer25", idempotency_key="k0")
    assert again.outcome is Outcome.OK and again.view == answers[0].view
    assert again.view.sku == "promo"
    assert (await sale.coupons.claim("d1", "u0", "", code="SUMMER25")).reason == "code_per_user"
    ann = (await sale.coupons.referral_code("d1", "ann", "pa")).view
    assert ann.code == (await sale.coupons.referral_code("d1", "ann", "pa")).view.code
    assert not ann.created
    assert (await sale.coupons.claim("d1", "f1", "", code=ann.code,
                                     identity="p-f1")).reason == "referral_used"
    assert (await sale.coupons.claim("d1", "f9", "", code=ann.code,
                                     identity="p-f9")).outcome is Outcome.OK
    await persister.drain()
    assert (await audit(store))["ok"]


def _claimed(code: str, user: str, kind: str = "promo", qty: int = 1,
             **more: Any) -> tuple[str, dict[str, Any]]:
    return ("code_claimed", {"claim": "c", "user": user, "code": code, "kind": kind,
                             "qty": qty, **more})


MINTED = ("referral_code_minted", {"user": "ann", "code": "RANN", "identity": "pa"})
_define = ("campaign_defined", {"spec": _codes_spec})
CASES = {
    "clean": ([_define, MINTED, _claimed("SUMMER25", "u", qty=2),
               _claimed("RANN", "f", "referral", referrer="ann", identity="pf")], None),
    "promo over": ([_define, _claimed("SUMMER25", "u"), _claimed("SUMMER25", "u", qty=2)],
                   "code_over_limit"),
    "unknown promo": ([_define, _claimed("NOPE", "u")], "code_over_limit"),
    "friend twice": ([_define, MINTED,
                      _claimed("RANN", "f", "referral", referrer="ann", identity="pf"),
                      _claimed("RANN", "f", "referral", referrer="ann", identity="pg")],
                     "referral_farmed"),
    "person twice": ([_define, MINTED,
                      _claimed("RANN", "f", "referral", referrer="ann", identity="pf"),
                      _claimed("RANN", "g", "referral", referrer="ann", identity="pf")],
                     "referral_farmed"),
    "own person": ([_define, MINTED,
                    _claimed("RANN", "ann2", "referral", referrer="ann", identity="pa")],
                   "referral_farmed"),
    "no such code": ([_define, _claimed("RBOB", "f", "referral", referrer="bob",
                                        identity="pf")], "referral_farmed"),
}


@pytest.mark.parametrize("case", CASES)
async def test_audit_finds_code_violations(store: Store, case: str) -> None:
    steps, kind = CASES[case]
    async with store.begin() as conn:
        await store_events(conn, store, _events(*steps))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["d1"]["violation_samples"]}
    if kind is None:
        assert summary["ok"], summary
    else:
        assert kind in kinds, summary
