"""Redis clients: one server (the default), or a Redis/Valkey Cluster.

In cluster mode (STAMPEDE_REDIS_CLUSTER) the client is redis-py's
`redis.asyncio.cluster.RedisCluster`, started from any one node's URL: it reads
the slot map (CLUSTER SLOTS), sends each command to the primary of its key's
slot, follows MOVED/ASK redirections, loads scripts on every primary
(SCRIPT LOAD goes to all of them) and, after a connection error, reads the
slot map again so a promoted replica is found.

Its command methods are those of the single-server client, so the code above
holds one type, `Redis`; the few places that differ in cluster mode (the
persister's stream reads, the console's reads, INFO memory) ask `is_cluster`,
and the replica and disk acknowledgements (WAIT, WAITAOF on the script's own
connection) go through state/on_primary.py.

A write is never retried by the client: a script whose connection broke may
have run, so the caller answers 503 and the client of the API retries with
its Idempotency-Key (the script answers the first result again).
"""

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterError,
    ConnectionError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError,
    TryAgainError,
)

SINGLE_MAX_CONNECTIONS = 128
"""The single-server pool: under a rush, callers wait for a free connection."""
CLUSTER_IN_FLIGHT = 128
"""Cluster mode: commands in flight at once; more wait their turn (redis-py's cluster
pool has no blocking mode: past its size it raises MaxConnectionsError)."""
CLUSTER_MAX_CONNECTIONS = 2 * CLUSTER_IN_FLIGHT
"""Per node: room for every waiting command plus the pipelines beside them."""


def engine_client(url: str, cluster: bool) -> "Redis":
    """The engine's client: a blocking pool on one server, or a cluster client."""
    if cluster:
        return cluster_client(url)
    # A blocking pool: under a rush, callers wait for a free connection
    # instead of failing with MaxConnectionsError.
    pool = BlockingConnectionPool.from_url(url, decode_responses=True,
                                           max_connections=SINGLE_MAX_CONNECTIONS,
                                           timeout=10, health_check_interval=30)
    return Redis.from_pool(pool)  # the client owns and closes the pool


def state_client(url: str, cluster: bool) -> "Redis":
    """A client of its own for the persister, healing, recovery, audit and checks."""
    if cluster:
        return cluster_client(url)
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)


class _BoundedCluster(RedisCluster):
    """A cluster client whose callers wait for a turn, like the single server's
    blocking pool, rather than fail when a rush opens more connections than allowed."""

    _turns: asyncio.Semaphore | None = None

    def turns(self) -> asyncio.Semaphore:
        if self._turns is None:
            self._turns = asyncio.Semaphore(CLUSTER_IN_FLIGHT)
        return self._turns

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turns():
            return await super().execute_command(*args, **kwargs)


def cluster_turn(client: object) -> AbstractAsyncContextManager[Any]:
    """A turn among the client's commands in flight (state/on_primary.py's pipelines
    take one too); no wait for a client that does not count them."""
    return client.turns() if isinstance(client, _BoundedCluster) else nullcontext()


def cluster_client(url: str) -> "Redis":
    client = _BoundedCluster.from_url(
        url, decode_responses=True, max_connections=CLUSTER_MAX_CONNECTIONS,
        # A primary that stops answering (a host gone, no reset) fails its requests
        # after socket_timeout: 503, and the slot map is read again.
        health_check_interval=30, socket_timeout=10, socket_connect_timeout=5,
        # no blind retry of a write whose connection broke (see the module's text)
        retry=Retry(NoBackoff(), 0))
    _tolerate_key_hints(client)
    # Same command methods as the single-server client (redis-py's own typing
    # keeps them apart): the differences are behind `is_cluster`.
    return cast(Redis, client)


def _tolerate_key_hints(client: RedisCluster) -> None:
    """redis-py's cluster transactions (MULTI in one slot) call a reply's callback with
    the `keys=[...]` hint its command methods add, which the plain callbacks
    (`bool` for HEXISTS, ...) refuse; its other paths drop the hint first. Drop it
    here too, so `pipeline(transaction=True)` works on one campaign's keys."""
    callbacks = client.response_callbacks
    for name, callback in list(callbacks.items()):
        callbacks[name] = _without_keys(callback)


def _without_keys(callback: Callable[..., Any]) -> Callable[..., Any]:
    def call(response: Any, **options: Any) -> Any:
        options.pop("keys", None)
        return callback(response, **options)
    return call


CLUSTER_TRANSIENT: tuple[type[Exception], ...] = (
    ClusterError, TryAgainError, RedisClusterException, ReadOnlyError)
"""What a cluster answers while a shard fails over or its slots move: CLUSTERDOWN,
TRYAGAIN, no node for a slot, a write that reached a demoted primary. Some are
ResponseErrors, yet none is the command's fault: retry later."""


def is_transient(exc: BaseException) -> bool:
    """Redis unreachable or a cluster shard failing over: not the request's fault."""
    return isinstance(exc, (ConnectionError, TimeoutError, OSError, *CLUSTER_TRANSIENT))


def is_cluster(redis: object) -> bool:
    """Whether this client talks to a Redis/Valkey Cluster."""
    return isinstance(redis, RedisCluster)


async def memory_info(redis: "Redis") -> dict[str, Any]:
    """INFO memory of the server, or on a cluster of the primary nearest its maxmemory
    (the first to refuse writes: the one the memory alert and the console watch)."""
    if not isinstance(redis, RedisCluster):
        return await redis.info("memory")
    by_node = cast(dict[str, dict[str, Any]],
                   await redis.info("memory", target_nodes=RedisCluster.PRIMARIES))

    def fullness(info: dict[str, Any]) -> float:
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0) or 0)
        return used / limit if limit else used / 2**62

    return max(by_node.values(), key=fullness, default={})
