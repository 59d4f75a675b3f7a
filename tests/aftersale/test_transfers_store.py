"""Transfers in the durable store, `stampede recover` and `stampede audit`
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
from tests.aftersale.helpers import bought, check_refund_invariants, refund
from tests.aftersale.test_transfers import _give, transferable
from tests.store.helpers import assert_store_matches_redis, store_rows
from tests.store.test_audit import DEFINE, WAVE, _events, held, settled

TTL = 86_400_000


async def test_transfers_are_stored_audited_and_recovered(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("gig", transferable(per_user=3))
    claim = await bought(sale, "gig", "ann", 3)
    await refund(sale, claim, qty=1)
    taken = await sale.transfers.accept(await _give(sale, claim, "ann"), "bob")
    assert taken.new_claim_id
    pending = await bought(sale, "gig", "cat", 1)
    open_token = await _give(sale, pending, "cat", "gig." + "99" * 16)
    await persister.drain()
    await assert_store_matches_redis(sale, store, "gig")
    rows = {r.claim_id: (r.user_id, r.status, r.qty) for r in await store_rows(store, t.claims,
                                                                               "gig")}
    assert rows[claim] == ("ann", "transferred", 3)
    assert rows[taken.new_claim_id] == ("bob", "confirmed", 2)
    summary = await audit(store)
    assert summary["ok"], summary

    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "gig", TTL)
    await check_refund_invariants(sale, "gig")
    views = await sale.tickets.mine("gig", "bob")
    assert views and [v.ticket_id for v in views] == [f"{taken.new_claim_id}-1",
                                                      f"{taken.new_claim_id}-2"]
    assert await sale.tickets.mine("gig", "ann") == []
    # bob holds 2 (limit 3): the open offer of cat's 1 unit still works after the rebuild
    moved = await sale.transfers.accept(open_token, "bob")
    assert moved.outcome is Outcome.OK
    assert (await sale.transfers.accept(await _give(sale, moved.new_claim_id or "", "bob",
                                                    "gig." + "88" * 16), "ann")).outcome \
        is Outcome.OK
    await persister.drain()
    await assert_store_matches_redis(sale, store, "gig")
    assert (await audit(store))["ok"]


async def test_one_ticket_transfers_are_stored_audited_and_recovered(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("gig", transferable(per_user=3))
    claim = await bought(sale, "gig", "ann", 3)
    offer = await sale.transfers.offer(claim, "ann", "gig." + "ab" * 16, 3)
    assert offer.outcome is Outcome.OK
    taken = await sale.transfers.accept("gig." + "ab" * 16, "bob")
    assert taken.new_claim_id
    await refund(sale, claim, qty=1)  # the second: the highest still the claim's
    await persister.drain()
    await assert_store_matches_redis(sale, store, "gig")
    rows = {r.claim_id: (r.user_id, r.status, r.qty) for r in await store_rows(store, t.claims,
                                                                               "gig")}
    assert rows[claim] == ("ann", "confirmed", 3)  # it keeps its other tickets
    assert rows[taken.new_claim_id] == ("bob", "confirmed", 1)
    summary = await audit(store)
    assert summary["ok"], summary
    before = await raw_redis.hgetall("{c:gig}:users")

    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "gig", TTL)
    await check_refund_invariants(sale, "gig")
    after = await raw_redis.hgetall("{c:gig}:users")
    assert {k: v for k, v in after.items() if "|" not in k} == \
        {k: v for k, v in before.items() if "|" not in k}
    views = {v.ticket_id: v.status for v in await sale.tickets.mine("gig", "ann") or []}
    assert views == {f"{claim}-1": "valid", f"{claim}-2": "refunded",
                     f"{claim}-3": "transferred"}
    again = await sale.transfers.offer(claim, "ann", "gig." + "cd" * 16, 3)
    assert again.reason == "ticket_not_valid"  # still moved after the rebuild
    assert (await refund(sale, claim)).outcome is Outcome.OK  # the one left
    await persister.drain()
    await assert_store_matches_redis(sale, store, "gig")
    assert (await audit(store))["ok"]


def transferred(claim: str, giver: str, qty: int = 1,
                ticket: int = 0) -> tuple[str, dict[str, Any]]:
    return ("claim_transferred", {"claim": claim, "new_claim": f"{claim}2{ticket or ''}",
                                  "from": giver, "user": "u9", "sku": "tee", "qty": qty,
                                  "price": 1, "created": 1, "deadline": 2, "ticket": ticket})


SOLD = [DEFINE, WAVE, held("a", "u1"), settled("confirmed", "a", "u1")]
CASES = {
    "clean": (SOLD + [transferred("a", "u1")], None),
    "not_sold": ([DEFINE, WAVE, held("a", "u1"), transferred("a", "u1")], "bad_transfer"),
    "not_the_givers": (SOLD + [transferred("a", "u2")], "bad_transfer"),
    "more_units": (SOLD + [transferred("a", "u1", 2)], "bad_transfer"),
    "twice": (SOLD + [transferred("a", "u1"), transferred("a", "u1")], "bad_transfer"),
    "one_ticket": (SOLD + [transferred("a", "u1", ticket=1)], None),
    "ticket_twice": (SOLD + [transferred("a", "u1", ticket=1), transferred("a", "u1", ticket=1)],
                     "bad_transfer"),
    "ticket_past_qty": (SOLD + [transferred("a", "u1", ticket=2)], "bad_transfer"),
    "rest_after_ticket": (SOLD + [transferred("a", "u1", ticket=1), transferred("a", "u1")],
                          "bad_transfer"),
}


@pytest.mark.parametrize("case", CASES)
async def test_audit_checks_transfers(store: Store, case: str) -> None:
    steps, kind = CASES[case]
    async with store.begin() as conn:
        await store_events(conn, store, _events(*steps))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["c1"]["violation_samples"]}
    if kind is None:
        assert summary["ok"], summary
    else:
        assert kind in kinds, summary
