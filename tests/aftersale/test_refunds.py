"""Refunds against a real Valkey: where the units go, who may refund, and only once."""

import asyncio

from stampede import Engine, Outcome, Settings
from stampede.domain.refunds import RefundRequest
from stampede.state import keys
from tests.aftersale.helpers import bought, check_refund_invariants, refund, sale_spec
from tests.domain.test_concurrency import _clone


async def test_an_operator_refunds_a_whole_claim_and_the_units_are_restocked(
        engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec(stock=5))
    claim = await bought(engine, "s", "ann", 3)
    done = await refund(engine, claim)
    assert done.outcome is Outcome.OK and done.view is not None
    assert (done.view.refunded, done.view.left, done.view.amount, done.view.status) == \
        (3, 0, 3 * 1999, "refunded")
    stats = await engine.stats("s")
    assert stats is not None
    assert (stats.skus[0].available, stats.skus[0].sold, stats.skus[0].released) == (5, 0, 5)
    assert [(r.sku, r.units, r.amount) for r in stats.refunds] == [("tee", 3, 3 * 1999)]
    assert stats.claims_by_outcome["refunds"] == 1
    view = await engine.get_claim(claim, "ann")
    assert view is not None and view.status == "refunded"
    again = await refund(engine, claim)  # a whole refund retried: nothing more
    assert again.outcome is Outcome.OK and again.view and again.view.refunded == 0
    assert (await refund(engine, claim, qty=1)).reason == "refund_exceeds"
    await check_refund_invariants(engine, "s")


async def test_some_units_then_the_rest_and_never_more_than_bought(engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec(stock=5, per_user=3))
    claim = await bought(engine, "s", "ann", 3)
    first = await refund(engine, claim, qty=2)
    assert first.view and (first.view.refunded, first.view.left, first.view.status) == \
        (2, 1, "confirmed")
    over = await refund(engine, claim, qty=2)
    assert over.outcome is Outcome.CONFLICT and over.reason == "refund_exceeds"
    assert over.params == {"available": 1}
    # Refunded units no longer count against the buyer's limit: two more fit.
    assert (await engine.claim("s", "ann", "tee", 2)).outcome is Outcome.OK
    rest = await refund(engine, claim)
    assert rest.view and (rest.view.refunded, rest.view.left) == (1, 0)
    await check_refund_invariants(engine, "s")


async def test_retired_units_leave_the_sale(engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec(stock=4, units_to="retire"))
    claim = await bought(engine, "s", "ann", 2)
    assert (await refund(engine, claim, qty=1)).outcome is Outcome.OK
    stats = await engine.stats("s")
    assert stats is not None
    assert (stats.skus[0].available, stats.skus[0].sold, stats.skus[0].released) == (2, 1, 3)
    await check_refund_invariants(engine, "s")


async def test_only_sold_claims_are_refunded(engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec())
    held = await engine.claim("s", "ann", "tee")
    assert held.claim
    refused = await refund(engine, held.claim.claim_id)
    assert (refused.outcome, refused.reason) == (Outcome.CONFLICT, "refund_not_sold")
    assert (await refund(engine, "s.0123456789abcdef0123")).reason == "no_claim"
    assert (await refund(engine, "not-a-claim")).reason == "no_claim"


async def test_a_buyer_refunds_only_their_own_claim_within_the_window(engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec(buyer_window_s=60))
    claim = await bought(engine, "s", "ann", 2)
    other = await refund(engine, claim, buyer="bob")
    assert (other.outcome, other.reason) == (Outcome.NOT_FOUND, "no_claim")  # BOLA: not found
    mine = await refund(engine, claim, qty=1, buyer="ann")
    assert mine.outcome is Outcome.OK
    await engine.set_clock_offset("s", 61_000)
    late = await refund(engine, claim, buyer="ann")
    assert (late.outcome, late.reason, late.params) == (Outcome.CONFLICT,
                                                        "refund_window_closed", {"limit": 60})
    assert (await refund(engine, claim)).outcome is Outcome.OK  # an operator still may
    await check_refund_invariants(engine, "s")


async def test_buyers_cannot_refund_without_a_window(engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec())
    claim = await bought(engine, "s", "ann")
    assert (await refund(engine, claim, buyer="ann")).reason == "refund_not_allowed"


async def test_a_keyed_refund_retried_answers_its_first_answer(engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec(stock=5))
    claim = await bought(engine, "s", "ann", 3)
    first = await refund(engine, claim, qty=1, key="k1")
    again = await refund(engine, claim, qty=1, key="k1")
    assert first.view == again.view and first.view and first.view.left == 2
    mismatch = await refund(engine, claim, qty=2, key="k1")
    assert mismatch.outcome is Outcome.IDEMPOTENCY_MISMATCH
    events = [e for _, e in await engine.redis.xrange(keys.events_key("s"))
              if e["type"] == "claim_refunded"]
    assert len(events) == 1 and events[0]["actor"] == "ops-ann" and events[0]["reason"] == "test"


async def test_refunded_units_go_to_the_waitlist_head_first(engine: Engine) -> None:
    await engine.define_campaign("s", sale_spec(stock=2, waitlist={"max_length": 10,
                                                                   "offer_ttl_s": 60}))
    claim = await bought(engine, "s", "ann", 2)
    for user in ("w1", "w2"):
        assert (await engine.join_waitlist("s", user, "tee"))[0] is Outcome.OK
    assert (await refund(engine, claim, qty=1)).outcome is Outcome.OK
    _, entries = await engine.waitlist("s", "w1")
    assert entries[0].status == "offered" and entries[0].offer is not None
    _, entries = await engine.waitlist("s", "w2")
    assert entries[0].status == "waiting"
    stats = await engine.stats("s")
    assert stats is not None and (stats.skus[0].available, stats.skus[0].held) == (0, 1)
    await check_refund_invariants(engine, "s")


async def test_refunds_racing_with_waitlist_joins_and_claims(engine: Engine,
                                                             settings: Settings) -> None:
    """40 buyers refund (some twice, concurrently) while 30 users join the waitlist and
    30 claim: every unit ends up exactly once (sold, held as an offer, or available),
    no claim is refunded twice, and offers go out in join order."""
    cid = "race"
    await engine.define_campaign(cid, sale_spec(stock=40, per_user=1, waitlist={
        "max_length": 100, "offer_ttl_s": 600}))
    claims = [await bought(engine, cid, f"b{i}") for i in range(40)]
    joins = [await engine.join_waitlist(cid, f"w{i}", "tee") for i in range(10)]
    assert all(o is Outcome.OK for o, _, _ in joins)
    engines = [engine] + [await _clone(engine, settings) for _ in range(3)]
    try:
        calls = [engines[i % 4].refunds.refund(c, RefundRequest(), "ops")
                 for i, c in enumerate(claims)]
        calls += [engines[(i + 1) % 4].refunds.refund(c, RefundRequest(), "ops")
                  for i, c in enumerate(claims[:20])]  # the same refunds, at once
        calls += [engines[i % 4].join_waitlist(cid, f"w{10 + i}", "tee") for i in range(20)]
        calls += [engines[i % 4].claim(cid, f"n{i}", "tee") for i in range(30)]
        await asyncio.gather(*calls)
    finally:
        for other in engines[1:]:
            await other.close()
    events = [e for _, e in await engine.redis.xrange(keys.events_key(cid))]
    refunded = [e["claim"] for e in events if e["type"] == "claim_refunded"]
    assert sorted(refunded) == sorted(claims)  # each exactly once
    joined = [e["user"] for e in events if e["type"] == "waitlist_joined"]
    offered = [e["user"] for e in events if e["type"] == "offer_made"]
    assert offered == joined[:len(offered)]  # head first, in join order
    await check_refund_invariants(engine, cid)
