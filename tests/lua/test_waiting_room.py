"""The waiting room: lottery at the opening, pacing by server time, signed admission."""

import asyncio
import time
from typing import Any

from stampede import Engine, Outcome
from stampede.domain.admission import AdmissionTokens
from stampede.domain.models import CampaignPatch, WaitingRoomPatch
from tests.conftest import campaign_spec, iso


def _spec(opens_in_s: float = 60, **room: Any) -> Any:
    settings = {"rate_per_s": 20, "burst": 5, "max_active": 10_000,
                "admission_window_s": 120, "token_ttl_s": 30} | room
    return campaign_spec(stock=1000, per_user=2, opens_in_s=opens_in_s,
                         waves=[{"at": iso(opens_in_s), "qty": 1000}],
                         waiting_room=settings)


async def _served(engine: Engine, cid: str) -> int:
    stats = await engine.stats(cid)
    assert stats and stats.waiting_room
    return stats.waiting_room.served


async def test_early_arrivals_are_shuffled_later_ones_queue_behind(engine: Engine) -> None:
    await engine.define_campaign("c1", _spec(opens_in_s=600, rate_per_s=1))
    early = [f"e{i:03d}" for i in range(200)]
    for user in early:  # in a known arrival order
        outcome, ticket, created = await engine.take_ticket("c1", user)
        assert outcome is Outcome.OK and ticket and created
        assert ticket.early and ticket.position is None and ticket.status == "waiting"
    assert ticket.early_arrivals == 200 and ticket.estimated_wait_s is not None
    assert ticket.estimated_wait_s > 590  # honest: the opening is ten minutes away
    await engine.set_clock_offset("c1", 601_000)
    late = [f"l{i:03d}" for i in range(50)]
    for user in late:
        _, ticket, _ = await engine.take_ticket("c1", user)
        assert ticket and not ticket.early
    places = {}
    for user in early + late:
        _, ticket = await engine.ticket("c1", user)
        assert ticket and ticket.position is not None
        places[user] = ticket.position
    assert sorted(places.values()) == list(range(1, 251))  # every place unique
    assert {places[u] for u in early} == set(range(1, 201))  # early arrivals first
    assert [places[u] for u in late] == list(range(201, 251))  # then arrival order
    drawn = [places[u] for u in early]
    assert drawn != sorted(drawn) and drawn != sorted(drawn, reverse=True)
    # Spearman's rho of arrival rank vs drawn place: ~N(0, 0.07) for a fair
    # shuffle; 0.3 is over four standard deviations.
    n = len(drawn)
    rho = 1 - 6 * sum((i + 1 - p) ** 2 for i, p in enumerate(drawn)) / (n * (n * n - 1))
    assert abs(rho) < 0.3
    # one ticket per user: taking again answers the same place
    _, again, created = await engine.take_ticket("c1", late[3])
    assert again and not created and again.position == 204


async def test_pacing_follows_server_time_within_rate_and_burst(engine: Engine) -> None:
    rate, burst = 20, 5
    started = time.monotonic()
    await engine.define_campaign("c1", _spec(opens_in_s=60, rate_per_s=rate, burst=burst))
    for i in range(400):
        await engine.take_ticket("c1", f"u{i}")
    assert await _served(engine, "c1") == 0  # nobody before the opening
    for t_ms in (0, 100, 1_000, 2_500, 5_000, 7_000, 12_000):
        await engine.set_clock_offset("c1", 60_000 + t_ms)
        served = await _served(engine, "c1")
        slack_ms = (time.monotonic() - started) * 1000  # real time passes too
        assert served <= rate * (t_ms + slack_ms) / 1000 + burst
        assert served >= rate * t_ms / 1000 - 1
    # no ticker: one poll after a long silence catches up with what time allows
    await engine.set_clock_offset("c1", 60_000 + 60_000)
    assert await _served(engine, "c1") == 400


async def test_an_idle_room_admits_at_most_the_burst_at_once(engine: Engine) -> None:
    rate, burst = 20, 5
    await engine.define_campaign("c1", _spec(opens_in_s=-30, rate_per_s=rate, burst=burst))
    started = time.monotonic()
    assert await _served(engine, "c1") == 0  # 30 s of nobody waiting
    for i in range(100):
        await engine.take_ticket("c1", f"u{i}")
    slack_s = time.monotonic() - started
    assert await _served(engine, "c1") <= burst + rate * slack_s + 1


async def test_rate_change_and_pause_apply_from_now(engine: Engine) -> None:
    await engine.define_campaign("c1", _spec(opens_in_s=60, rate_per_s=10, burst=1))
    started = time.monotonic()  # real seconds pass too, and count at the rate in force
    for i in range(500):
        await engine.take_ticket("c1", f"u{i}")
    await engine.set_clock_offset("c1", 70_000)  # 10 s open at 10/s
    assert 95 <= await _served(engine, "c1") <= 101 + 10 * (time.monotonic() - started) + 1
    patch = CampaignPatch(waiting_room=WaitingRoomPatch(paused=True))
    assert await engine.patch_campaign("c1", patch, "ops") is Outcome.OK
    at_10s = await _served(engine, "c1")  # read after the pause: real time passes meanwhile
    await engine.set_clock_offset("c1", 100_000)
    assert await _served(engine, "c1") == at_10s  # paused: nobody admitted
    # Early arrivals are drawn in a random order: follow someone still waiting.
    user, ticket = "", None
    for i in range(499, -1, -1):
        _, ticket = await engine.ticket("c1", f"u{i}")
        if ticket and ticket.status == "waiting":
            user = f"u{i}"
            break
    assert ticket and ticket.paused and ticket.estimated_wait_s is None
    patch = CampaignPatch(waiting_room=WaitingRoomPatch(paused=False, rate_per_s=30))
    resumed = time.monotonic()
    assert await engine.patch_campaign("c1", patch, "ops") is Outcome.OK
    await engine.set_clock_offset("c1", 105_000)  # 5 s at the new rate, none for the pause
    served = await _served(engine, "c1")
    assert at_10s + 145 <= served <= at_10s + 151 + 30 * (time.monotonic() - resumed) + 1
    _, ticket = await engine.ticket("c1", user)
    assert ticket and ticket.ahead is not None and ticket.estimated_wait_s is not None
    assert abs(ticket.estimated_wait_s - ticket.ahead / 30) <= 0.1  # position, counter, rate


async def test_active_cap_and_lapsed_turns_return_to_the_flow(engine: Engine) -> None:
    await engine.define_campaign("c1", _spec(opens_in_s=60, rate_per_s=1000, burst=1000,
                                             max_active=10, admission_window_s=30))
    for i in range(40):
        await engine.take_ticket("c1", f"u{i}")
    await engine.set_clock_offset("c1", 61_000)
    assert await _served(engine, "c1") == 10  # never more active than the cap
    tickets = {u: (await engine.ticket("c1", u))[1] for u in (f"u{i}" for i in range(40))}
    admitted = [u for u, t in tickets.items() if t and t.status == "admitted"]
    assert len(admitted) == 10
    # one claims (its turn is used: a slot frees at once); the others let theirs lapse
    first = tickets[admitted[0]]
    assert first and first.admission_token
    r = await engine.claim("c1", admitted[0], "tee", admission_token=first.admission_token)
    assert r.outcome is Outcome.OK
    assert await _served(engine, "c1") == 11
    await engine.set_clock_offset("c1", 92_000)  # every 30 s window has passed
    assert await _served(engine, "c1") == 21
    _, lapsed = await engine.ticket("c1", admitted[5])
    assert lapsed and lapsed.status == "done" and lapsed.admission_token is None
    stats = await engine.stats("c1")
    assert stats and stats.waiting_room and stats.waiting_room.active == 10


async def _admitted_token(engine: Engine, cid: str, user: str) -> str:
    await engine.take_ticket(cid, user)
    _, ticket = await engine.ticket(cid, user)
    assert ticket and ticket.status == "admitted" and ticket.admission_token
    return ticket.admission_token


async def test_tokens_forged_expired_cross_user_cross_campaign_refused(engine: Engine) -> None:
    for cid in ("c1", "c2"):
        await engine.define_campaign(cid, _spec(opens_in_s=-60, rate_per_s=1000, burst=100,
                                                token_ttl_s=5))
    alice = await _admitted_token(engine, "c1", "alice")
    await _admitted_token(engine, "c1", "bob")
    alice_c2 = await _admitted_token(engine, "c2", "alice")
    refused = [
        None,  # no token at all
        "not-a-token",
        alice[:-2] + ("AA" if alice[-2:] != "AA" else "BB"),  # forged signature
        AdmissionTokens("another secret").sign("c1", "alice", 2**50),  # someone else's key
        alice_c2,  # another campaign
    ]
    for token in refused:
        r = await engine.claim("c1", "alice", "tee", admission_token=token)
        assert r.outcome is Outcome.ADMISSION_REQUIRED, token
    r = await engine.claim("c1", "bob", "tee", admission_token=alice)  # another user
    assert r.outcome is Outcome.ADMISSION_REQUIRED
    await engine.set_clock_offset("c1", 6_000)  # the token has expired, the window has not
    r = await engine.claim("c1", "alice", "tee", admission_token=alice)
    assert r.outcome is Outcome.ADMISSION_REQUIRED
    _, fresh = await engine.ticket("c1", "alice")
    assert fresh and fresh.admission_token
    r = await engine.claim("c1", "alice", "tee", admission_token=fresh.admission_token)
    assert r.outcome is Outcome.OK
    # one turn, one claim: the same token does not claim again
    r = await engine.claim("c1", "alice", "tee", admission_token=fresh.admission_token)
    assert r.outcome is Outcome.ADMISSION_REQUIRED


async def test_no_waiting_room_no_queue(engine: Engine) -> None:
    await engine.define_campaign("plain", campaign_spec())
    assert (await engine.take_ticket("plain", "a"))[0] is Outcome.NOT_FOUND
    assert (await engine.claim("plain", "a", "tee", admission_token="junk")).outcome \
        is Outcome.OK
    patch = CampaignPatch(waiting_room=WaitingRoomPatch(rate_per_s=5))
    assert await engine.patch_campaign("plain", patch, "ops") is Outcome.NOT_FOUND


async def test_concurrent_joins_get_unique_places(engine: Engine) -> None:
    await engine.define_campaign("c1", _spec(opens_in_s=-1, rate_per_s=1))
    results = await asyncio.gather(*(engine.take_ticket("c1", f"u{i % 300}")
                                     for i in range(600)))
    places = {t.position for _, t, _ in results if t}
    assert places == set(range(1, 301))
    assert sum(created for _, _, created in results) == 300
