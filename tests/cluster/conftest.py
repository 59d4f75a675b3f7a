"""Cluster fixtures: a real local Valkey Cluster for the session (never a mock).

Three primaries and three replicas from the same server binary as the
embedded Valkey, each on its own ports and directory, `cluster-enabled yes`,
cluster-node-timeout 1 s (failover is quick). STAMPEDE_TEST_CLUSTER_URL names
an existing cluster instead (one whose data the tests may flush).

A test that kills nodes starts its own cluster (`own_cluster`) so the
session's stays whole for everyone else.
"""

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.cluster import RedisCluster

from stampede import Engine, Settings
from stampede.runtime.valkey_cluster import LocalValkeyCluster
from stampede.state.connection import state_client


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[LocalValkeyCluster | None]:
    """The session's cluster (None when STAMPEDE_TEST_CLUSTER_URL names another)."""
    if os.environ.get("STAMPEDE_TEST_CLUSTER_URL"):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="stampede-cluster-") as tmp:
        cluster = LocalValkeyCluster(Path(tmp))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def cluster_url(valkey_cluster: LocalValkeyCluster | None) -> str:
    """The URL of one node of the session's cluster."""
    if valkey_cluster is None:
        return os.environ["STAMPEDE_TEST_CLUSTER_URL"]
    return valkey_cluster.url


@pytest.fixture
def clean_cluster(valkey_cluster: LocalValkeyCluster | None, cluster_url: str) -> str:
    """The session's cluster with every primary flushed."""
    if valkey_cluster is not None:
        valkey_cluster.flushall()
        return cluster_url
    client = RedisCluster.from_url(cluster_url)
    try:
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        client.close()
    return cluster_url


@pytest.fixture
def clean_redis(clean_cluster: str) -> str:
    """Suites of other folders that start engines of their own from `clean_redis`
    (several workers, model tests) get the cluster here (tests/cluster/suites.py)."""
    return clean_cluster


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalValkeyCluster]:
    """A cluster of this test's own, to kill nodes of."""
    cluster = LocalValkeyCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings, in cluster mode (overrides tests/conftest.py's here)."""
    return Settings(data_dir=tmp_path, sweep_batch=500, redis_cluster=True)


@pytest.fixture
async def engine(clean_cluster: str, settings: Settings) -> AsyncIterator[Engine]:
    """An engine on the session's cluster (overrides tests/conftest.py's here)."""
    eng = Engine.from_url(clean_cluster, settings)
    await eng.start()
    yield eng
    await eng.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The durable tests' store here: SQLite in the test's directory."""
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
async def raw_redis(clean_cluster: str) -> AsyncIterator["Redis[str]"]:
    """A cluster client of the session's cluster (tests/store's fixture of that name
    gives a one-server client)."""
    client = state_client(clean_cluster, cluster=True)
    yield client
    await client.aclose()
