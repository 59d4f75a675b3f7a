"""Check-ins in the durable store, `stampede recover` and `stampede audit`
(SQLite and PostgreSQL, each against a real Valkey)."""

from typing import Any

import pytest
from redis.asyncio import Redis

from stampede import Engine
from stampede.domain.tickets import Scan
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.projection import store_events
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from tests.aftersale.helpers import bought, refund
from tests.aftersale.test_tickets import NORTH, SOUTH, _codes, ticketed
from tests.store.helpers import assert_store_matches_redis, store_rows
from tests.store.test_audit import DEFINE, WAVE, _events, held, settled

TTL = 86_400_000


async def test_checkins_are_stored_audited_and_recovered(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("gig", ticketed())  # type: ignore[arg-type]
    claim = await bought(sale, "gig", "ann", 3)
    codes = await _codes(sale, "gig", "ann")
    admitted = await sale.tickets.check_in(NORTH, [Scan(code=codes[f"{claim}-1"] or "")])
    assert admitted[0].verdict == "admitted"
    assert (await refund(sale, claim, qty=1)).outcome.name == "OK"  # the third ticket
    await persister.drain()
    await assert_store_matches_redis(sale, store, "gig")
    rows = await store_rows(store, t.checkins, "gig")
    assert [(r.ticket_id, r.gate, r.user_id) for r in rows] == [(f"{claim}-1", "north", "ann")]
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["gig"]["checkins"] == {"north": 1}

    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "gig", TTL)
    views = await sale.tickets.mine("gig", "ann")
    assert views and [v.status for v in views] == ["checked_in", "valid", "refunded"]
    verdicts = await sale.tickets.check_in(SOUTH, [Scan(code=codes[f"{claim}-{n}"] or "")
                                                   for n in (1, 3, 2)])
    assert [(v.verdict, v.gate) for v in verdicts] == [
        ("checked_in", "north"), ("refunded", None), ("admitted", "south")]
    stats = await sale.stats("gig")
    assert stats and stats.checkins == {"north": 1, "south": 1}
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary



def checked_in(n: int, gate: str = "north") -> tuple[str, dict[str, Any]]:
    return ("ticket_checked_in", {"ticket": f"a-{n}", "claim": "a", "user": "u1",
                                  "sku": "tee", "gate": gate, "scanner": "s", "at": 1})


def refunded(tickets: str) -> tuple[str, dict[str, Any]]:
    return ("claim_refunded", {"claim": "a", "user": "u1", "sku": "tee", "qty": 1,
                               "amount": 1, "left": 0, "to": "restock", "actor": "ops",
                               "tickets": tickets})


SOLD = [DEFINE, WAVE, held("a", "u1"), settled("confirmed", "a", "u1")]
CASES = {
    "clean": (SOLD + [checked_in(1)], None),
    "checked_in_twice": (SOLD + [checked_in(1), checked_in(1, "south")], "checked_in_twice"),
    "refunded_then_checked_in": (SOLD + [refunded("1"), checked_in(1)],
                                 "refunded_checked_in"),
    "checked_in_then_refunded": (SOLD + [checked_in(1), refunded("1")],
                                 "refunded_checked_in"),
    "no_such_unit": (SOLD + [checked_in(2)], "bad_checkin"),
    "held_only": ([DEFINE, WAVE, held("a", "u1"), checked_in(1)], "bad_checkin"),
}


@pytest.mark.parametrize("case", CASES)
async def test_audit_checks_checkins(store: Store, case: str) -> None:
    steps, kind = CASES[case]
    async with store.begin() as conn:
        await store_events(conn, store, _events(*steps))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["c1"]["violation_samples"]}
    if kind is None:
        assert summary["ok"], summary
    else:
        assert kind in kinds, summary
