"""Sold-out waitlists: offers in exact FIFO order, from every path that releases units."""

from typing import Any

from stampede import Engine, Outcome
from stampede.state import keys
from tests.conftest import campaign_spec, iso


def _spec(stock: int = 1, max_length: int = 100, offer_ttl_s: int = 60,
          **extra: Any) -> Any:
    return campaign_spec(stock=stock, per_user=extra.pop("per_user", 2), hold_ttl_s=600,
                         waitlist={"max_length": max_length, "offer_ttl_s": offer_ttl_s},
                         **extra)


async def _sold_out(engine: Engine, cid: str = "c1", **spec: Any) -> str:
    """A campaign whose one unit is held by `holder`; returns the holder's claim id."""
    await engine.define_campaign(cid, _spec(**spec))
    r = await engine.claim(cid, "holder", "tee")
    assert r.outcome is Outcome.OK and r.claim
    return r.claim.claim_id


async def _events(engine: Engine, cid: str = "c1") -> list[dict[str, str]]:
    return [e for _, e in await engine.redis.xrange(keys.events_key(cid))]


async def test_join_position_leave(engine: Engine) -> None:
    await _sold_out(engine)
    for i, user in enumerate(["a", "b", "c"]):
        outcome, entry, created = await engine.join_waitlist("c1", user, "tee")
        assert outcome is Outcome.OK and created and entry
        assert (entry.status, entry.position) == ("waiting", i + 1)
    # one entry per user per SKU: joining again answers the entry, changes nothing
    outcome, entry, created = await engine.join_waitlist("c1", "b", "tee")
    assert outcome is Outcome.OK and not created and entry and entry.position == 2
    assert (await engine.leave_waitlist("c1", "a", "tee"))[0] is Outcome.OK
    assert (await engine.leave_waitlist("c1", "a", "tee"))[0] is Outcome.NOT_FOUND
    _, entries = await engine.waitlist("c1", "c")
    assert [(e.sku, e.position) for e in entries] == [("tee", 2)]
    stats = await engine.stats("c1")
    assert stats and stats.waitlist == 2


async def test_join_refusals(engine: Engine) -> None:
    await engine.define_campaign("plain", campaign_spec(waves=[]))
    assert (await engine.join_waitlist("plain", "a", "tee"))[0] is Outcome.NOT_FOUND
    await engine.define_campaign("c1", _spec(stock=2, max_length=2, per_user=1))
    assert (await engine.join_waitlist("c1", "a", "tee"))[0] is Outcome.NOT_SOLD_OUT
    assert (await engine.join_waitlist("c1", "a", "nope"))[0] is Outcome.NOT_FOUND
    await engine.claim("c1", "x", "tee")
    await engine.claim("c1", "y", "tee")
    assert (await engine.join_waitlist("c1", "x", "tee"))[0] is Outcome.LIMIT_EXCEEDED
    assert (await engine.join_waitlist("c1", "a", "tee", 11))[0] is Outcome.INVALID
    assert (await engine.join_waitlist("c1", "a", "tee"))[0] is Outcome.OK
    assert (await engine.join_waitlist("c1", "b", "tee"))[0] is Outcome.OK
    assert (await engine.join_waitlist("c1", "c", "tee"))[0] is Outcome.WAITLIST_FULL


async def test_pending_wave_is_not_sold_out(engine: Engine) -> None:
    spec = _spec(waves=[{"at": iso(-30), "qty": 1}, {"at": iso(1800), "qty": 5}])
    await engine.define_campaign("c1", spec)
    await engine.claim("c1", "holder", "tee")
    assert (await engine.join_waitlist("c1", "a", "tee"))[0] is Outcome.NOT_SOLD_OUT


async def test_cancel_offers_to_the_head_not_to_stock(engine: Engine) -> None:
    claim_id = await _sold_out(engine)
    await engine.join_waitlist("c1", "a", "tee")
    await engine.join_waitlist("c1", "b", "tee")
    assert (await engine.cancel(claim_id, "holder")).outcome is Outcome.OK
    _, [entry] = await engine.waitlist("c1", "a", "tee")
    assert entry.status == "offered" and entry.offer and entry.offer.status == "held"
    assert entry.offer.offer
    assert (await engine.get_claim(entry.offer.claim_id, "a")).offer  # type: ignore[union-attr]
    # general stock never gets the unit while someone waits
    assert (await engine.claim("c1", "newcomer", "tee")).outcome is Outcome.SOLD_OUT
    _, [b] = await engine.waitlist("c1", "b", "tee")
    assert (b.status, b.position) == ("waiting", 1)
    stats = await engine.stats("c1")
    assert stats and (stats.skus[0].available, stats.skus[0].held) == (0, 1)
    done = await engine.confirm(entry.offer.claim_id, "a")
    assert done.outcome is Outcome.OK and done.claim and done.claim.status == "confirmed"
    _, entries = await engine.waitlist("c1", "a")
    assert entries == []
    types = [e["type"] for e in await _events(engine)]
    assert types[-5:] == ["claim_cancelled", "claim_held", "offer_made", "claim_confirmed",
                          "offer_accepted"]


async def test_lapsed_offer_passes_to_the_next_then_to_stock(engine: Engine) -> None:
    claim_id = await _sold_out(engine, offer_ttl_s=60)
    await engine.join_waitlist("c1", "a", "tee")
    await engine.join_waitlist("c1", "b", "tee")
    await engine.cancel(claim_id, "holder")
    _, [a] = await engine.waitlist("c1", "a", "tee")
    assert a.offer
    await engine.set_clock_offset("c1", 61_000)
    assert await engine.sweep("c1") == 1
    assert (await engine.confirm(a.offer.claim_id, "a")).outcome is Outcome.HOLD_EXPIRED
    _, [b] = await engine.waitlist("c1", "b", "tee")
    assert b.status == "offered" and b.offer and b.offer.claim_id != a.offer.claim_id
    await engine.set_clock_offset("c1", 122_000)
    await engine.sweep("c1")
    stats = await engine.stats("c1")
    assert stats and (stats.skus[0].available, stats.skus[0].held, stats.waitlist) == (1, 0, 0)
    types = [e["type"] for e in await _events(engine)]
    assert types.count("offer_lapsed") == 2 and types.count("offer_made") == 2


async def test_leaving_with_an_offer_declines_it(engine: Engine) -> None:
    claim_id = await _sold_out(engine)
    await engine.join_waitlist("c1", "a", "tee")
    await engine.join_waitlist("c1", "b", "tee")
    await engine.cancel(claim_id, "holder")
    outcome, left = await engine.leave_waitlist("c1", "a", "tee")
    assert outcome is Outcome.OK and left and left.offer and left.offer.status == "cancelled"
    _, [b] = await engine.waitlist("c1", "b", "tee")
    assert b.status == "offered"
    assert "offer_declined" in [e["type"] for e in await _events(engine)]


async def test_stock_and_waves_go_to_the_waitlist_first(engine: Engine) -> None:
    spec = _spec(waves=[{"at": iso(-30), "qty": 1}, {"at": iso(60), "qty": 2}])
    await engine.define_campaign("c1", spec)
    await engine.claim("c1", "holder", "tee")
    for user in "abc":  # the pending wave says: not sold out yet
        assert (await engine.join_waitlist("c1", user, "tee"))[0] is Outcome.NOT_SOLD_OUT
    await engine.set_clock_offset("c1", 61_000)
    assert (await engine.claim("c1", "x", "tee")).outcome is Outcome.OK
    assert (await engine.claim("c1", "y", "tee")).outcome is Outcome.OK
    for user in "abc":
        assert (await engine.join_waitlist("c1", user, "tee"))[0] is Outcome.OK
    assert await engine.adjust_stock("c1", "tee", 2, "ops") == (Outcome.OK, 0)
    statuses = {u: (await engine.waitlist("c1", u, "tee"))[1][0].status for u in "abc"}
    assert statuses == {"a": "offered", "b": "offered", "c": "waiting"}
    assert await engine.adjust_stock("c1", "tee", 3, "ops") == (Outcome.OK, 2)


async def test_head_wanting_more_waits_and_blocks_no_one_out_of_order(engine: Engine) -> None:
    claim_id = await _sold_out(engine, stock=1)
    await engine.join_waitlist("c1", "a", "tee", 2)
    await engine.join_waitlist("c1", "b", "tee", 1)
    await engine.cancel(claim_id, "holder")  # one unit: not enough for a, and b is behind a
    _, [b] = await engine.waitlist("c1", "b", "tee")
    assert b.status == "waiting"
    assert (await engine.claim("c1", "z", "tee")).outcome is Outcome.SOLD_OUT
    await engine.adjust_stock("c1", "tee", 1, "ops")
    _, [a] = await engine.waitlist("c1", "a", "tee")
    assert a.status == "offered" and a.offer and a.offer.qty == 2


async def test_head_over_its_limit_is_skipped(engine: Engine) -> None:
    await engine.define_campaign("c1", _spec(stock=1, per_user=1, skus=("tee", "cap")))
    held = await engine.claim("c1", "holder", "tee")
    assert held.claim
    await engine.join_waitlist("c1", "a", "tee")
    await engine.join_waitlist("c1", "b", "tee")
    assert (await engine.claim("c1", "a", "cap")).outcome is Outcome.OK  # a is at the limit now
    await engine.cancel(held.claim.claim_id, "holder")
    assert (await engine.waitlist("c1", "a", "tee"))[1] == []
    _, [b] = await engine.waitlist("c1", "b", "tee")
    assert b.status == "offered"
    skipped = [e for e in await _events(engine) if e["type"] == "waitlist_skipped"]
    assert [(e["user"], e["reason"]) for e in skipped] == [("a", "limit_exceeded")]
