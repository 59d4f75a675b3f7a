"""Replica acknowledgement (STAMPEDE_CLUSTER_WAIT_REPLICAS): a state change is answered
only once a replica has it, and the persister stores only what a replica has.

The replica of a campaign's primary is frozen with SIGSTOP (it stays connected
and stops acknowledging): the claim's WAIT then times out, the claim answers
unavailable though it stands on the primary, the persister leaves its event
pending; once the replica runs again, the retry with the same idempotency key
answers the same claim and the persister stores it.
"""

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from stampede import Engine, Settings
from stampede.durable.persister import Persister
from stampede.durable.store import Store
from stampede.runtime.valkey_cluster import LocalValkeyCluster
from stampede.state import keys
from stampede.state.on_primary import on_primary
from stampede.state.scripts import NotReplicatedError
from tests.conftest import campaign_spec
from tests.store.helpers import assert_store_matches_redis

WAIT_MS = 200


@pytest.fixture
def ack_settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(data_dir=tmp_path, store_url=store_url,
                    redis_cluster=True, cluster_wait_replicas=1,
                    cluster_wait_timeout_ms=WAIT_MS, persist_claim_idle_ms=200)


async def _home(client: "Redis[str]", cid: str) -> tuple[int, int]:
    """Ports of the primary and the replica serving campaign `cid`'s slot."""
    assert isinstance(client, RedisCluster)
    await client.initialize()
    primary, replica = client.nodes_manager.slots_cache[
        client.keyslot(keys.campaign_keys(cid).meta)][:2]
    return int(primary.port), int(replica.port)


async def _calls(client: "Redis[str]", port: int, command: str) -> int:
    """How often the node on `port` has run `command` (INFO commandstats)."""
    assert isinstance(client, RedisCluster)
    node = client.get_node(host="127.0.0.1", port=port)
    stats = await client.info("commandstats", target_nodes=node)
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _wait_timeouts(source: str) -> float:
    """stampede_cluster_replica_wait_timeouts_total{source} in this process."""
    return REGISTRY.get_sample_value("stampede_cluster_replica_wait_timeouts_total",
                                     {"source": source}) or 0.0


@contextmanager
def frozen(cluster: LocalValkeyCluster, port: int) -> Iterator[None]:
    """The node on `port` stopped (SIGSTOP) for the block: connected, silent."""
    process = cluster.node_for_port(port).process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


async def test_a_claim_waits_for_a_replica_and_the_store_for_what_it_has(
        valkey_cluster: LocalValkeyCluster | None, clean_cluster: str, ack_settings: Settings,
        raw_redis: "Redis[str]", store: Store) -> None:
    if valkey_cluster is None:
        pytest.skip("freezes a replica: needs the session's own cluster")
    engine = Engine.from_url(clean_cluster, ack_settings)
    await engine.start()
    persister = Persister(raw_redis, store, ack_settings, consumer="test")
    try:
        await engine.define_campaign("ra", campaign_spec(stock=10, per_user=None))
        primary, replica = await _home(raw_redis, "ra")
        waits = await _calls(raw_redis, primary, "wait")
        first = await engine.claim("ra", "u1", "tee", idempotency_key="k1")
        assert first.claim is not None
        assert await _calls(raw_redis, primary, "wait") > waits, "no WAIT beside the script"
        await persister.drain()
        persisted = persister.persisted

        timeouts = _wait_timeouts("write"), _wait_timeouts("persister")
        with frozen(valkey_cluster, replica):
            with pytest.raises(NotReplicatedError, match="0 of 1 replicas"):
                await engine.claim("ra", "u2", "tee", idempotency_key="k2")
            assert _wait_timeouts("write") == timeouts[0] + 1  # the 503 is counted
            # the claim stands on the primary, its event is read but not stored
            claims = await raw_redis.hgetall(keys.campaign_keys("ra").claims)
            assert len(claims) == 2
            await persister.refresh_streams()
            assert await persister.step() == 0 and persister.unreplicated == 1
            # nor does taking the pending entry over store it
            assert await persister.take_over(min_idle_ms=0) == 0
            assert persister.unreplicated == 2 and persister.persisted == persisted
            assert _wait_timeouts("persister") == timeouts[1] + 2

        again = await engine.claim("ra", "u2", "tee", idempotency_key="k2")
        assert again.claim is not None and again.claim.claim_id in claims
        await persister.take_over(min_idle_ms=0)
        await persister.drain()
        await assert_store_matches_redis(engine, store, "ra")
    finally:
        await engine.close()


async def test_durable_ack_travels_beside_the_wait_in_cluster_mode(
        clean_cluster: str, ack_settings: Settings, raw_redis: "Redis[str]") -> None:
    settings = Settings(**{**ack_settings.__dict__, "durable_ack": True})
    engine = Engine.from_url(clean_cluster, settings)
    await engine.start()  # checks every primary keeps an AOF
    try:
        await engine.define_campaign("rd", campaign_spec(stock=10, per_user=None))
        primary, _ = await _home(raw_redis, "rd")
        before = (await _calls(raw_redis, primary, "wait"),
                  await _calls(raw_redis, primary, "waitaof"))
        result = await engine.claim("rd", "u1", "tee")
        assert result.claim is not None
        after = (await _calls(raw_redis, primary, "wait"),
                 await _calls(raw_redis, primary, "waitaof"))
        assert after[0] > before[0] and after[1] > before[1]
    finally:
        await engine.close()


async def test_a_stale_slot_map_is_followed_with_the_wait_behind_the_write(
        raw_redis: "Redis[str]") -> None:
    """The slot map names the wrong primary: that node answers MOVED (having run
    nothing), and the write goes again, WAIT and all, to the slot's owner."""
    assert isinstance(raw_redis, RedisCluster)
    await raw_redis.initialize()
    key = "{c:moved}:probe"
    slot = raw_redis.keyslot(key)
    owner = raw_redis.nodes_manager.slots_cache[slot][0]
    stranger = next(n for n in raw_redis.get_primaries() if n.name != owner.name)
    raw_redis.nodes_manager.slots_cache[slot] = [stranger]
    written, acked = await on_primary(raw_redis, key, [("SET", key, "1"), ("WAIT", 1, 2000)])
    assert written in (True, "OK") and acked == 1
    assert raw_redis.get_node_from_key(key) == owner  # the map learnt the move
    assert await raw_redis.get(key) == "1"
