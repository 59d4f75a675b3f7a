"""The waiting room survives a total Redis loss: tickets are events, and `stampede recover`
rebuilds the queue in its order, the serving counter and who is admitted.
Real Valkey, real SQLite and PostgreSQL."""

from typing import Any

from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch, WaitingRoomPatch
from stampede.durable.audit import audit
from stampede.durable.events import QueueAdmitted, QueueLapsed, QueueTicketIssued
from stampede.durable.persister import Persister
from stampede.durable.queue_recovery import RoomRebuild
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.state.keys import campaign_keys
from tests.conftest import campaign_spec, iso

TTL = 86_400_000
OPENS_IN_S = 600
ROOM = {"rate_per_s": 2, "burst": 3, "max_active": 100, "admission_window_s": 600,
        "token_ttl_s": 60}


async def _room(redis: "Redis[str]") -> dict[str, Any]:
    ks = campaign_keys("c1")
    meta = await redis.hgetall(ks.meta)
    return {"queue": await redis.zrange(ks.queue, 0, -1, withscores=True),
            "admitted": await redis.zrange(ks.admitted, 0, -1, withscores=True),
            **{f: meta.get(f) for f in ("wr_served", "wr_seq")}}


async def ticket_views(sale: Engine, cid: str,
                       users: list[str]) -> dict[str, tuple[str, int | None]]:
    """Each user's ticket in the campaign's waiting room: (status, position)."""
    out = {}
    for user in users:
        outcome, ticket = await sale.ticket(cid, user)
        assert outcome is Outcome.OK and ticket is not None, (user, outcome)
        out[user] = (ticket.status, ticket.position)
    return out


async def test_a_flushed_waiting_room_comes_back_in_its_order(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(
        stock=100, per_user=2, opens_in_s=OPENS_IN_S, waiting_room=ROOM,
        waves=[{"at": iso(OPENS_IN_S), "qty": 100}]))
    early = [f"e{i}" for i in range(8)]  # before the opening: places drawn by lottery
    for user in early:
        assert (await sale.take_ticket("c1", user))[0] is Outcome.OK
    opened = (OPENS_IN_S + 2) * 1000  # two seconds after the opening: some admitted
    await sale.set_clock_offset("c1", opened)
    late = [f"l{i}" for i in range(4)]  # after it: in arrival order
    for user in late:
        assert (await sale.take_ticket("c1", user))[0] is Outcome.OK
    views = await ticket_views(sale, "c1", early + late)
    admitted = sorted((pos, u) for u, (status, pos) in views.items() if status == "admitted")
    assert len(admitted) >= 2, views
    (_, used), (_, kept) = admitted[:2]
    _, kept_ticket = await sale.ticket("c1", kept)
    assert kept_ticket and kept_ticket.admission_token
    _, used_ticket = await sale.ticket("c1", used)
    assert used_ticket and used_ticket.admission_token
    held = await sale.claim("c1", used, "tee", admission_token=used_ticket.admission_token)
    assert held.outcome is Outcome.OK  # the turn is used
    paused = CampaignPatch(waiting_room=WaitingRoomPatch(paused=True))
    assert await sale.patch_campaign("c1", paused, "ops") is Outcome.OK  # (no more admissions)
    views = await ticket_views(sale, "c1", early + late)
    assert views[used][0] == "done"
    before = await _room(raw_redis)
    assert len(before["queue"]) == 12 and before["wr_seq"] == "4"

    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "c1", TTL)
    await sale.set_clock_offset("c1", opened)  # (the test's clock was in the lost meta)

    assert await _room(raw_redis) == before  # places, admissions, counters
    assert await ticket_views(sale, "c1", early + late) == views
    again = await sale.claim("c1", used, "tee", admission_token=used_ticket.admission_token)
    assert again.outcome is Outcome.ADMISSION_REQUIRED  # a used turn stays used
    kept_claim = await sale.claim("c1", kept, "tee", admission_token=kept_ticket.admission_token)
    assert kept_claim.outcome is Outcome.OK  # an admission still open still admits
    _, newcomer, created = await sale.take_ticket("c1", "n0")
    assert created and newcomer and newcomer.position == 13  # behind everyone, as before
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["c1"]["waiting_room"]["tickets"] == 13


def _ev(cls: Any, seq: int, ts: int = 0, **fields: Any) -> Any:
    ev = cls(**fields)
    ev.seq, ev.ts = seq, ts
    return ev


def test_the_fold_places_early_tickets_by_draw_and_drops_lapsed_admissions() -> None:
    room = RoomRebuild()
    for seq, (user, place) in enumerate([("b", "0.7"), ("a", "0.2"), ("c", "0.7"),
                                         ("d", "2"), ("e", "3")], start=1):
        room.fold(_ev(QueueTicketIssued, seq, user=user, place=place))
    room.fold(_ev(QueueAdmitted, 6, ts=10, first=0, count=2, until=100, tokens=0, at=10))
    assert room.line == ["a", "b", "c", "d", "e"] and set(room.admitted) == {"a", "b"}
    room.fold(_ev(QueueAdmitted, 7, ts=50, first=2, count=1, until=200, tokens=0, at=50))
    room.fold(_ev(QueueLapsed, 8, ts=100, count=2))
    assert set(room.admitted) == {"c"} and room.lapsed == 2
    assert (room.served, room.seq, room.out_of_order, room.tickets_twice) == (3, 2, [], [])
    assert room.complete
    room.fold(_ev(QueueTicketIssued, 9, user="a", place="4"))
    room.fold(_ev(QueueAdmitted, 10, ts=60, first=5, count=1, until=300, tokens=0, at=60))
    assert room.tickets_twice == ["a"] and room.out_of_order == [10]


def test_a_room_older_than_its_events_is_not_judged_nor_replaced() -> None:
    # Two tickets (arrivals 1 and 2) and three admissions came before the events:
    # the first ticket with an event is arrival 3 (place 4).
    room = RoomRebuild()
    room.fold(_ev(QueueTicketIssued, 1, user="c", place="4"))
    room.fold(_ev(QueueAdmitted, 2, ts=10, first=3, count=1, until=100, tokens=0, at=10))
    room.fold(_ev(QueueAdmitted, 3, ts=20, first=4, count=0, until=100, tokens=0, at=20))
    assert room.began_before and room.out_of_order == [] and not room.complete
    fresh = RoomRebuild()
    fresh.fold(_ev(QueueTicketIssued, 1, user="a", place="2"))  # arrival 1
    assert fresh.complete
