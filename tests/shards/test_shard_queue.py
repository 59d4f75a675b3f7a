"""The waiting room on a sharded campaign, against a real Valkey (and a Cluster, through
tests/cluster/test_cluster_shards.py): one queue on shard 0 admits in one order across
all shards, and every shard takes a claim only with an admission pass whose turn it
has not seen used: no claim without admission, one turn one claim, exactly the stock."""

import asyncio
from collections import Counter

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from stampede import Engine, Outcome, Settings
from stampede.domain import shards
from stampede.domain.models import CampaignPatch, WaitingRoomPatch
from stampede.state import keys, records
from tests.conftest import campaign_spec, iso
from tests.domain.test_concurrency import _clone

OPENS_IN_S = 600
ROOM = {"rate_per_s": 20, "burst": 20, "max_active": 100_000, "admission_window_s": 600,
        "token_ttl_s": 600}


async def _in_chunks(calls: list, size: int = 250) -> list:  # type: ignore[type-arg]
    """Await coroutines `size` at a time (a slow shared machine: bounded concurrency)."""
    out = []
    for i in range(0, len(calls), size):
        out += await asyncio.gather(*calls[i:i + size])
    return out


async def test_one_queue_admits_in_order_and_every_shard_checks_the_pass(
        engine: Engine, settings: Settings) -> None:
    n, stock, per_user, users_n = 4, 300, 2, 2000
    await engine.define_campaign("hot", campaign_spec(
        stock=stock, per_user=per_user, shards=n, opens_in_s=OPENS_IN_S,
        waves=[{"at": iso(OPENS_IN_S), "qty": stock}], waiting_room=ROOM))
    gateways = [engine] + [await _clone(engine, settings) for _ in range(3)]
    users = [f"user{i}" for i in range(users_n)]
    try:
        # Everyone queues before the opening (a lottery), through four gateways.
        taken = await _in_chunks([gateways[i % 4].take_ticket("hot", u)
                                  for i, u in enumerate(users)])
        assert all(o is Outcome.OK and created for o, _, created in taken)
        # Fifty seconds after the opening at 20/s: about a thousand admitted; then paused,
        # so the line stands still while it is checked.
        await engine.set_clock_offset("hot", (OPENS_IN_S + 50) * 1000)
        pause = CampaignPatch(waiting_room=WaitingRoomPatch(paused=True))
        assert await engine.patch_campaign("hot", pause, "ops") is Outcome.OK
        stats = await engine.stats("hot")
        assert stats is not None and stats.waiting_room is not None
        served = stats.waiting_room.served
        assert 0 < served < users_n
        polled = await _in_chunks([gateways[i % 4].ticket("hot", u)
                                   for i, u in enumerate(users)])
        tickets = {u: t for u, (o, t) in zip(users, polled, strict=True)
                   if o is Outcome.OK and t is not None}
        assert len(tickets) == users_n
        # One queue: every place once, 1..N, whatever the user's shard.
        assert sorted(t.position or 0 for t in tickets.values()) == list(range(1, users_n + 1))
        # Global FIFO: exactly the first `served` places are admitted, from every shard.
        admitted = {u for u, t in tickets.items() if t.status == "admitted"}
        assert admitted == {u for u, t in tickets.items() if (t.position or 0) <= served}
        assert {shards.shard_of_user(u, n) for u in admitted} == set(range(n))
        token = {u: tickets[u].admission_token for u in admitted}

        # The rush: every user claims; the admitted show their pass, the others none,
        # and some of those show another user's pass.
        others = sorted(set(users) - admitted)
        borrowed = {u: token[sorted(admitted)[i]] for i, u in enumerate(others[:50])}
        qty = {u: 1 + i % 2 for i, u in enumerate(users)}

        async def claim(i: int, user: str, key: str) -> tuple[str, Outcome, str | None]:
            r = await gateways[i % 4].claim("hot", user, "tee", qty[user],
                                            idempotency_key=key,
                                            admission_token=token.get(user,
                                                                      borrowed.get(user)))
            return user, r.outcome, r.claim.claim_id if r.claim else None

        results = await _in_chunks([claim(i, u, f"k-{u}") for i, u in enumerate(users)])
        outcomes = {u: (o, c) for u, o, c in results}
        for user in others:  # no claim without admission, on any shard
            assert outcomes[user][0] is Outcome.ADMISSION_REQUIRED, user
        won = {u: c for u, (o, c) in outcomes.items() if o is Outcome.OK}
        assert set(won) <= admitted
        assert {shards.shard_of_user(u, n) for u in won} == set(range(n))
        assert Counter(o for o, _ in outcomes.values()) - Counter(
            {Outcome.OK: len(won), Outcome.SOLD_OUT: len(admitted) - len(won),
             Outcome.ADMISSION_REQUIRED: len(others)}) == Counter()

        async def books() -> dict[str, int]:
            report = await shards.audit(engine.redis, "hot", n)
            assert report.problems == []  # each shard balances; lent = borrowed
            return report.skus["tee"]

        tee = await books()
        assert (tee["held"], tee["available"]) == (stock, 0)  # exactly the stock sold
        for k in range(n):  # nobody over the limit
            held = await engine.redis.hgetall(
                keys.campaign_keys(keys.shard_id("hot", k, n)).users)
            assert all(sum(records.decode_units(v).values()) <= per_user
                       for u, v in held.items() if "|" not in u and not u.startswith("~"))

        # A retried claim (same Idempotency-Key) answers the same claim, nothing more;
        # another claim on the same turn is refused on whichever shard serves the user.
        retried = await _in_chunks([claim(i + 1, u, f"k-{u}") for i, u in enumerate(won)])
        assert all(o is Outcome.OK and c == won[u] for u, o, c in retried)
        again = await _in_chunks([claim(i, u, f"again-{u}") for i, u in enumerate(won)])
        assert all(o is Outcome.ADMISSION_REQUIRED for _, o, _ in again)
        assert (await books())["held"] == stock

        # Shard 0's queue heard of every used turn: their slots are free, they show done.
        stats = await engine.stats("hot")
        assert stats is not None and stats.waiting_room is not None
        assert stats.waiting_room.served == served
        assert stats.waiting_room.active == served - len(won)
        done = await _in_chunks([engine.ticket("hot", u) for u in won])
        assert all(t is not None and t.status == "done" for _, t in done)
    finally:
        for g in gateways[1:]:
            await g.close()


async def test_a_shard_refuses_a_pass_after_its_expiry(engine: Engine) -> None:
    """The pass's expiry is judged by the claim's shard, on server time."""
    n = 2
    await engine.define_campaign("hot", campaign_spec(
        stock=10, per_user=2, shards=n, opens_in_s=OPENS_IN_S,
        waves=[{"at": iso(OPENS_IN_S), "qty": 10}],
        waiting_room=ROOM | {"token_ttl_s": 30}))
    user = next(u for u in (f"u{i}" for i in range(100)) if shards.shard_of_user(u, n) == 1)
    await engine.take_ticket("hot", user)
    await engine.set_clock_offset("hot", (OPENS_IN_S + 5) * 1000)
    _, ticket = await engine.ticket("hot", user)
    assert ticket is not None and ticket.status == "admitted" and ticket.admission_token
    await engine.set_clock_offset("hot", (OPENS_IN_S + 40) * 1000)  # token_ttl_s passed
    late = await engine.claim("hot", user, "tee", admission_token=ticket.admission_token)
    assert late.outcome is Outcome.ADMISSION_REQUIRED
    _, fresh = await engine.ticket("hot", user)  # the turn is open: poll for a new pass
    assert fresh is not None and fresh.admission_token
    ok = await engine.claim("hot", user, "tee", admission_token=fresh.admission_token)
    assert ok.outcome is Outcome.OK


async def test_a_lost_turn_signal_keeps_the_claim_and_the_slot_until_the_window_ends(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Freeing shard 0's slot after a claim on another shard is not atomic with it: if
    that fails, the claim is still held and answered, the turn stays used on its shard,
    and the slot stays taken (the ticket shows admitted) until the window ends."""
    n = 2
    await engine.define_campaign("hot", campaign_spec(
        stock=10, per_user=2, shards=n, opens_in_s=OPENS_IN_S,
        waves=[{"at": iso(OPENS_IN_S), "qty": 10}], waiting_room=ROOM))
    user = next(u for u in (f"u{i}" for i in range(100)) if shards.shard_of_user(u, n) == 1)
    await engine.take_ticket("hot", user)
    await engine.set_clock_offset("hot", (OPENS_IN_S + 5) * 1000)
    _, ticket = await engine.ticket("hot", user)
    assert ticket is not None and ticket.admission_token

    async def lost(*_: object) -> int:
        raise RedisConnectionError("shard 0's node is gone")

    monkeypatch.setattr(engine.redis, "zrem", lost)
    held = await engine.claim("hot", user, "tee", admission_token=ticket.admission_token)
    assert held.outcome is Outcome.OK
    monkeypatch.undo()
    again = await engine.claim("hot", user, "tee", admission_token=ticket.admission_token)
    assert again.outcome is Outcome.ADMISSION_REQUIRED  # used on its shard all the same
    _, after = await engine.ticket("hot", user)
    assert after is not None and after.status == "admitted"  # the slot, until the window
    stats = await engine.stats("hot")
    assert stats is not None and stats.waiting_room is not None
    assert stats.waiting_room.active == 1
    await engine.set_clock_offset("hot", (OPENS_IN_S + 5 + ROOM["admission_window_s"]) * 1000)
    _, lapsed = await engine.ticket("hot", user)
    assert lapsed is not None and lapsed.status == "done"
