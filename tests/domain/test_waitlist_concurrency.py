"""Waitlist FIFO under concurrent releases and lapsed offers, against a real server.

The offers must go out in exactly the order the users joined (read from the
event stream), never twice to one entry, and never a unit to general stock
while anyone waits. A release that skipped the waitlist, an offer made
outside the releasing script or a head read twice would break one of these.
"""

import asyncio
from collections import Counter

from stampede import Engine, Outcome, Settings
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.domain.test_concurrency import _check_invariants, _clone


async def _events(engine: Engine, cid: str) -> list[dict[str, str]]:
    return [e for _, e in await engine.redis.xrange(keys.events_key(cid))]


async def test_fifo_under_concurrent_releases_and_lapses(engine: Engine,
                                                         settings: Settings) -> None:
    cid = "wl"
    spec = campaign_spec(stock=50, per_user=1, hold_ttl_s=3600,
                         waitlist={"max_length": 1000, "offer_ttl_s": 60})
    await engine.define_campaign(cid, spec)
    holds = [await engine.claim(cid, f"h{i}", "tee") for i in range(50)]
    claim_ids = [r.claim.claim_id for r in holds if r.claim]
    engines = [engine] + [await _clone(engine, settings) for _ in range(3)]
    try:
        joined = await asyncio.gather(*(engines[i % 4].join_waitlist(cid, f"w{i}", "tee")
                                        for i in range(200)))
        assert all(o is Outcome.OK for o, _, _ in joined)
        order = [e["user"] for e in await _events(engine, cid) if e["type"] == "waitlist_joined"]
        assert sorted(order) == sorted(f"w{i}" for i in range(200))

        # Round 1: 30 cancels, 5 stock additions of 2, and 100 newcomers, all at once.
        calls = [engines[i % 4].cancel(c, f"h{i}") for i, c in enumerate(claim_ids[:30])]
        calls += [engines[i % 4].adjust_stock(cid, "tee", 2, "ops") for i in range(5)]
        calls += [engines[i % 4].claim(cid, f"n{i}", "tee") for i in range(100)]
        results = await asyncio.gather(*calls)
        newcomers = [r.outcome for r in results[35:]]  # type: ignore[union-attr]
        assert Counter(newcomers) == {Outcome.SOLD_OUT: 100}

        # The first ten accept; the other thirty offers lapse while 20 more holds
        # are cancelled and sweeps run from every engine.
        offered = [e for e in await _events(engine, cid) if e["type"] == "offer_made"]
        assert [e["user"] for e in offered] == order[:40]
        by_user = {e["user"]: e["claim"] for e in offered}
        confirmed = await asyncio.gather(*(engines[i % 4].confirm(by_user[u], u)
                                           for i, u in enumerate(order[:10])))
        assert all(r.outcome is Outcome.OK for r in confirmed)
        await engine.set_clock_offset(cid, 61_000)
        calls = [engines[i % 4].cancel(c, f"h{30 + i}") for i, c in enumerate(claim_ids[30:])]
        calls += [e.sweep(cid) for e in engines for _ in range(3)]
        calls += [engines[i % 4].claim(cid, f"m{i}", "tee") for i in range(100)]
        results = await asyncio.gather(*calls)
        assert all(r.outcome is Outcome.SOLD_OUT for r in results[32:])  # type: ignore[union-attr]
    finally:
        for e in engines[1:]:
            await e.close()

    events = await _events(engine, cid)
    offers = [e["user"] for e in events if e["type"] == "offer_made"]
    assert offers == order[:90]  # exact FIFO: 40 + 30 passed on from lapses + 20 cancels
    assert len(set(offers)) == len(offers)  # never twice to one entry
    assert Counter(e["type"] for e in events)["offer_lapsed"] == 30
    stats = await engine.stats(cid)
    assert stats and stats.waitlist == 110
    s = stats.skus[0]
    assert (s.available, s.held, s.sold, s.released) == (0, 50, 10, 60)
    for i, user in enumerate(order[90:95]):
        _, [entry] = await engine.waitlist(cid, user, "tee")
        assert (entry.status, entry.position) == ("waiting", i + 1)
    await _check_invariants(engine, cid, 1)
