"""The waiting room of a sharded campaign across a failover: the primary holding a
shard that takes passes (not the queue's) is killed with SIGKILL while admitted users
claim. The turn is used in the claim's own script, replicated with the hold (replica
acknowledgement on), so each user ends with exactly one claim, retried claims (same
Idempotency-Key) have no double effect, and a used turn stays used on the promoted
replica."""

import asyncio
import time
from pathlib import Path

from redis.asyncio.cluster import RedisCluster

from stampede import Engine, Outcome, Settings
from stampede.domain import shards
from stampede.runtime.valkey_cluster import LocalValkeyCluster
from stampede.state import keys, records
from tests.conftest import campaign_spec

N = 3
USERS = 240
ROOM = {"rate_per_s": 1_000_000, "burst": 1_000_000, "max_active": 100_000,
        "admission_window_s": 600, "token_ttl_s": 600}
RETRY_FOR_S = 60.0


async def test_a_pass_shards_primary_killed_mid_rush(own_cluster: LocalValkeyCluster,
                                                     tmp_path: Path) -> None:
    engine = Engine.from_url(own_cluster.url, Settings(data_dir=tmp_path, redis_cluster=True))
    await engine.start()
    try:
        await engine.define_campaign("hot", campaign_spec(stock=10_000, per_user=2, shards=N,
                                                          waiting_room=ROOM))
        assert isinstance(engine.redis, RedisCluster)
        users = [f"u{i}" for i in range(USERS)]
        tokens = {}
        for user in users:
            _, ticket, _ = await engine.take_ticket("hot", user)
            assert ticket is not None and ticket.admission_token, ticket
            tokens[user] = ticket.admission_token
        home = engine.redis.get_node_from_key(keys.campaign_keys(
            keys.shard_id("hot", 1, N)).meta)
        victim = own_cluster.node_for_port(int(home.port))
        retried: list[str] = []

        async def buyer(i: int, user: str) -> str:
            await asyncio.sleep(i * 0.01)  # spread over the kill
            give_up = time.monotonic() + RETRY_FOR_S
            while True:  # as a client retries a 503: the same Idempotency-Key
                try:
                    r = await engine.claim("hot", user, "tee", 1, idempotency_key=f"k-{user}",
                                           admission_token=tokens[user])
                except Exception:  # noqa: BLE001 - connection lost, not replicated, moved
                    assert time.monotonic() < give_up, f"{user} never answered"
                    retried.append(user)
                    await asyncio.sleep(0.2)
                    continue
                assert r.outcome is Outcome.OK and r.claim is not None, (user, r)
                return r.claim.claim_id

        rush = asyncio.gather(*(buyer(i, u) for i, u in enumerate(users)))
        await asyncio.sleep(0.8)
        own_cluster.kill(victim)
        await asyncio.to_thread(own_cluster.wait_healthy, 30)
        await asyncio.to_thread(own_cluster.restart, victim)  # the promoted one's replica
        await asyncio.to_thread(own_cluster.wait_healthy, 30)
        answered = dict(zip(users, await rush, strict=True))
        assert victim.port not in {n.port for n in own_cluster.primary_nodes()}
        assert any(shards.shard_of_user(u, N) == 1 for u in retried), \
            "no claim of the killed shard was in flight"

        # One claim per user, the one they were answered; no claim nobody was told of.
        held: dict[str, set[str]] = {}
        for k in range(N):
            raw = await engine.redis.hgetall(keys.campaign_keys(keys.shard_id("hot", k, N)).claims)
            for claim_id, record in raw.items():
                held.setdefault(records.CLAIM.decode(record).user, set()).add(claim_id)
        assert held == {u: {c} for u, c in answered.items()}
        # Each turn is used once, on whichever shard, the killed one's included.
        for user in users:
            again = await engine.claim("hot", user, "tee", 1, idempotency_key=f"again-{user}",
                                       admission_token=tokens[user])
            assert again.outcome is Outcome.ADMISSION_REQUIRED, (user, again)
        report = await shards.audit(engine.redis, "hot", N)
        assert report.problems == [] and report.skus["tee"]["held"] == USERS
    finally:
        await engine.close()
