"""STAMPEDE_REDIS_CLUSTER: what it needs and what it refuses, before anything starts."""

import pytest
from redis.exceptions import ClusterDownError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from stampede import Settings
from stampede.errors import ConfigError
from stampede.state.connection import engine_client, is_cluster, is_transient, state_client


def test_cluster_mode_needs_a_node_url_and_waits_for_a_replica_by_default() -> None:
    with pytest.raises(ConfigError, match="STAMPEDE_REDIS_CLUSTER needs STAMPEDE_REDIS_URL"):
        Settings.from_env({"STAMPEDE_REDIS_CLUSTER": "1"})
    node = {"STAMPEDE_REDIS_CLUSTER": "1", "STAMPEDE_REDIS_URL": "redis://127.0.0.1:7000/0"}
    with pytest.raises(ConfigError, match="STAMPEDE_CLUSTER_WAIT_REPLICAS must not be negative"):
        Settings.from_env({**node, "STAMPEDE_CLUSTER_WAIT_REPLICAS": "-1"})
    with pytest.raises(ConfigError, match="STAMPEDE_CLUSTER_WAIT_TIMEOUT_MS must be positive"):
        Settings.from_env({**node, "STAMPEDE_CLUSTER_WAIT_TIMEOUT_MS": "0"})
    on = Settings.from_env({**node, "STAMPEDE_REDIS_CLUSTER": "yes"})
    assert on.redis_cluster and not Settings.from_env({}).redis_cluster
    assert on.cluster_wait_replicas == 1 and on.replica_ack
    off = Settings.from_env({**node, "STAMPEDE_CLUSTER_WAIT_REPLICAS": "0"})
    assert not off.replica_ack and not Settings.from_env({}).replica_ack
    # durable ack travels beside the replica's WAIT (tests/cluster/test_replica_ack.py)
    assert Settings.from_env({**node, "STAMPEDE_DURABLE_ACK": "1"}).durable_ack


async def test_the_single_server_client_stays_the_default() -> None:
    url = "redis://127.0.0.1:7000/0"  # never connected: clients connect lazily
    plain, state = engine_client(url, cluster=False), state_client(url, cluster=False)
    clustered = engine_client(url, cluster=True)
    try:
        assert not is_cluster(plain) and not is_cluster(state) and is_cluster(clustered)
    finally:
        for client in (plain, state, clustered):
            await client.aclose()


def test_a_failing_over_shard_is_transient_and_a_bad_entry_is_not() -> None:
    assert is_transient(ClusterDownError("CLUSTERDOWN")) and is_transient(TryAgainError("x"))
    assert is_transient(RedisConnectionError()) and is_transient(OSError())
    assert not is_transient(ValueError("not-a-number")) and not is_transient(ResponseError("x"))
