"""A sharded campaign's waiting room survives a total Redis loss: `stampede recover`
rebuilds shard 0's queue in its order (its admissions less the turns claims used on
any shard) and each other shard's used turns from its stored claims, so a pass whose
turn was used stays refused after the loss. Real Valkey, real SQLite and PostgreSQL."""

from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.domain import shards
from stampede.domain.models import CampaignPatch, WaitingRoomPatch
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_all
from stampede.durable.store import Store
from stampede.state import keys
from tests.conftest import campaign_spec, iso
from tests.store.test_queue_recovery import ticket_views

TTL = 86_400_000
OPENS_IN_S = 600
N = 3
ROOM = {"rate_per_s": 2, "burst": 2, "max_active": 100, "admission_window_s": 600,
        "token_ttl_s": 600}


async def test_a_flushed_sharded_queue_comes_back_with_its_used_turns(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("hot", campaign_spec(
        stock=30, per_user=2, shards=N, opens_in_s=OPENS_IN_S, waiting_room=ROOM,
        waves=[{"at": iso(OPENS_IN_S), "qty": 30}]))
    users = [f"u{i}" for i in range(24)]
    for user in users:
        assert (await sale.take_ticket("hot", user))[0] is Outcome.OK
    opened = (OPENS_IN_S + 10) * 1000  # ten seconds after the opening: twenty admitted
    await sale.set_clock_offset("hot", opened)
    views = await ticket_views(sale, "hot", users)
    admitted = [u for u, (status, _) in views.items() if status == "admitted"]
    assert len(admitted) >= 6, views
    passes = {}
    for user in admitted:
        _, ticket = await sale.ticket("hot", user)
        assert ticket is not None and ticket.admission_token
        passes[user] = ticket.admission_token
    # One claimant on each shard uses their turn; the others keep theirs open.
    used = [next(u for u in admitted if shards.shard_of_user(u, N) == k) for k in range(N)]
    kept = [next(u for u in admitted if shards.shard_of_user(u, N) == k and u not in used)
            for k in range(N)]
    for user in used:
        r = await sale.claim("hot", user, "tee", admission_token=passes[user])
        assert r.outcome is Outcome.OK, (user, r)
    pause = CampaignPatch(waiting_room=WaitingRoomPatch(paused=True))
    assert await sale.patch_campaign("hot", pause, "ops") is Outcome.OK
    views = await ticket_views(sale, "hot", users)
    assert all(views[u][0] == "done" for u in used)
    before = await sale.stats("hot")
    assert before is not None and before.waiting_room is not None

    await persister.drain()
    await raw_redis.flushall()
    await recover_all(raw_redis, store, TTL)
    await sale.set_clock_offset("hot", opened)  # (the test's clock was in the lost meta)

    assert await ticket_views(sale, "hot", users) == views  # places, admissions, used turns
    after = await sale.stats("hot")
    assert after is not None and after.waiting_room == before.waiting_room
    for user in used:  # a used turn stays used, on whichever shard used it
        again = await sale.claim("hot", user, "tee", admission_token=passes[user])
        assert again.outcome is Outcome.ADMISSION_REQUIRED, user
    for user in kept:  # an admission still open still admits, on every shard
        r = await sale.claim("hot", user, "tee", admission_token=passes[user])
        assert r.outcome is Outcome.OK, (user, r)
    for k in range(1, N):  # each other shard's used turns, rebuilt from its claims
        turns = await raw_redis.zrange(keys.campaign_keys(keys.shard_id("hot", k, N)).admitted,
                                       0, -1)
        assert sorted(turns) == sorted(u for u in used + kept if shards.shard_of_user(u, N) == k)
    _, newcomer, created = await sale.take_ticket("hot", "late")
    assert created and newcomer and newcomer.position == len(users) + 1
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
    assert summary["campaigns"]["hot"]["waiting_room"]["tickets"] == len(users) + 1
    report = await shards.audit(raw_redis, "hot", N)
    assert report.problems == []
