"""Cluster mode: commands sent together on ONE connection to the primary of a key's slot.

WAIT and WAITAOF count the writes of their own connection, and they carry no
key, so redis-py's cluster client cannot route them beside a script by
itself. Its pipeline can, when each command names its node (`target_nodes`):
the commands of one node go out on one connection, in order
(`ClusterNode.execute_pipeline`). That is what `on_primary` does: EVALSHA
then WAIT (and/or WAITAOF), or XREADGROUP then WAIT for the persister.

Redirections are handled here, not by redis-py: its pipeline would resend a
redirected command alone, without the WAIT behind it. MOVED and TRYAGAIN ran
nothing, so the commands go again to the new owner; ASK goes once to the
importing node behind ASKING. A broken connection or CLUSTERDOWN may or may
not have run the script: it is raised (503 unavailable, the client retries
with its Idempotency-Key) after asking the client for a fresh slot map.
"""

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    ReadOnlyError,
    TimeoutError,
    TryAgainError,
)

from stampede.state.connection import cluster_turn

Command = tuple[Any, ...]

REDIRECTS = 5
"""Redirections followed before giving up (503): a slot moving while we look."""


async def on_primary(redis: "Redis", key: str, commands: Sequence[Command]) -> list[Any]:
    """Run `commands` in order on one connection to the primary holding `key`'s slot.

    Returns each command's reply, an error reply in its place as an exception."""
    client = cast(RedisCluster, redis)
    asking: ClusterNode | None = None
    for _ in range(REDIRECTS):
        await _fresh_map(client)
        node = asking or client.get_node_from_key(key)
        if node is None:  # (only when a replica is asked for; never here)
            raise TryAgainError(f"no primary holds the slot of {key}")
        sent = [("ASKING",), *commands] if asking else list(commands)
        replies = await _send(client, node, sent)
        if asking:
            replies, asking = replies[1:], None
        redirect = next((r for r in replies if isinstance(r, (MovedError, AskError,
                                                              TryAgainError))), None)
        if isinstance(redirect, MovedError):  # ran nothing: the slot has a new owner
            await client.nodes_manager.move_slot(redirect)
        elif isinstance(redirect, AskError):  # ran nothing: the slot is being imported
            asking = client.get_node(host=redirect.host, port=redirect.port)
            if asking is None:
                raise redirect
        elif isinstance(redirect, TryAgainError):  # ran nothing: keys mid-migration
            await asyncio.sleep(0.05)
        else:
            if any(isinstance(r, (ClusterDownError, ReadOnlyError)) for r in replies):
                _read_map_again(client)  # a failover under way: 503 now, new owner next
            return replies
    raise TryAgainError(f"the slot of {key} kept moving")


async def _send(client: RedisCluster, node: ClusterNode, commands: Sequence[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for args in commands:
        pipe.execute_command(*args, target_nodes=node)
    try:
        async with cluster_turn(client):
            return await pipe.execute(raise_on_error=False, allow_redirections=False)
    except (ConnectionError, TimeoutError, OSError):
        _read_map_again(client)
        raise


async def _fresh_map(client: RedisCluster) -> None:
    if client._initialize:  # noqa: SLF001 - see _read_map_again
        await client.initialize()


def _read_map_again(client: RedisCluster) -> None:
    """Ask the client to read the slot map before its next command: redis-py's own flag,
    which its command path sets on the same errors (its retries, which would read
    the map, are off: a write is never retried blindly)."""
    client._initialize = True  # noqa: SLF001
