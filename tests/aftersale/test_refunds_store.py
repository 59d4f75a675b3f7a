"""Refunds in the durable store, in `stampede recover` and in `stampede audit`
(SQLite and PostgreSQL, each against a real Valkey)."""

from typing import Any

import pytest
from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.projection import store_events
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys
from tests.aftersale.helpers import bought, check_refund_invariants, refund, sale_spec
from tests.store.helpers import assert_store_matches_redis, store_rows
from tests.store.test_audit import DEFINE, WAVE, _events, held, settled

TTL = 86_400_000


async def test_refunds_are_stored_audited_and_recovered(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", sale_spec(stock=6, per_user=3, waitlist={
        "max_length": 10, "offer_ttl_s": 600}))
    whole = await bought(sale, "c1", "ann", 2)
    part = await bought(sale, "c1", "bob", 3)
    await bought(sale, "c1", "cat", 1)
    assert (await sale.join_waitlist("c1", "wes", "tee"))[0] is Outcome.OK
    assert (await refund(sale, whole)).outcome is Outcome.OK  # one to wes's offer, one to stock
    first = await refund(sale, part, qty=2, key="k-part")
    assert first.outcome is Outcome.OK
    before = await sale.stats("c1")
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    rows = await store_rows(store, t.refunds, "c1")
    assert sorted((r.claim_id, r.qty, r.amount, r.left_qty, r.actor) for r in rows) == sorted(
        [(whole, 2, 2 * 1999, 0, "ops-ann"), (part, 2, 2 * 1999, 1, "ops-ann")])
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["c1"]["refunds"] == {"tee": {"units": 4, "amount": 4 * 1999}}

    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c1", TTL)
    after = await sale.stats("c1")
    assert before is not None and after is not None
    assert after.skus == before.skus and after.refunds == before.refunds
    assert after.claims_by_outcome["refunds"] == 2
    await check_refund_invariants(sale, "c1")
    retry = await refund(sale, part, qty=2, key="k-part")  # the first answer, rebuilt
    assert retry.view == first.view
    assert (await refund(sale, part, qty=2)).reason == "refund_exceeds"
    # bob refunded 2 of 3: he may buy 2 more (limit 3), not 3.
    assert (await sale.claim("c1", "bob", "tee", 3)).outcome is Outcome.LIMIT_EXCEEDED
    assert (await refund(sale, part)).outcome is Outcome.OK
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    assert (await audit(store))["ok"]


def refunded(claim: str, qty: int, left: int) -> tuple[str, dict[str, Any]]:
    return ("claim_refunded", {"claim": claim, "user": "u1", "sku": "tee", "qty": qty,
                               "amount": qty, "left": left, "to": "restock", "actor": "ops"})


CASES = {
    "clean": ([DEFINE, WAVE, held("a", "u1"), settled("confirmed", "a", "u1"),
               refunded("a", 1, 0)], None),
    "refund_not_sold": ([DEFINE, WAVE, held("a", "u1"), refunded("a", 1, 0)],
                        "refund_not_sold"),
    "refunded_twice": ([DEFINE, WAVE, held("a", "u1"), settled("confirmed", "a", "u1"),
                        refunded("a", 1, 0), refunded("a", 1, 0)], "refund_not_sold"),
    "refunds_over_sold": ([DEFINE, WAVE, held("a", "u1"), settled("confirmed", "a", "u1"),
                           refunded("a", 2, 0)], "refunds_over_sold"),
}


@pytest.mark.parametrize("case", CASES)
async def test_audit_checks_refunds(store: Store, case: str) -> None:
    steps, kind = CASES[case]
    async with store.begin() as conn:
        await store_events(conn, store, _events(*steps))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["c1"]["violation_samples"]}
    if kind is None:
        assert summary["ok"], summary
    else:
        assert kind in kinds, summary


async def test_recovery_keeps_refunds_of_a_live_redis(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    """Recover over a Redis that still has everything: refund records are rebuilt,
    not doubled (users, totals)."""
    await sale.define_campaign("c1", sale_spec(stock=4, per_user=4))
    claim = await bought(sale, "c1", "ann", 3)
    await refund(sale, claim, qty=1)
    users_before = await raw_redis.hgetall(keys.campaign_keys("c1").users)
    await persister.drain()
    await recover_campaign(raw_redis, store, "c1", TTL)
    assert await raw_redis.hgetall(keys.campaign_keys("c1").users) == users_before
    await check_refund_invariants(sale, "c1")
