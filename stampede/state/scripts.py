"""The script registry: load every Lua operation once, call it by SHA.

Scripts are loaded at start (readiness depends on it) and reloaded when the
server answers NOSCRIPT: its script cache is volatile (restart, SCRIPT FLUSH,
failover).

Durable acknowledgement (STAMPEDE_DURABLE_ACK): a script that changes what a
client is answered about is pipelined with `WAITAOF 1 0 timeout` on the same
connection, so its answer waits until Valkey has fsynced the write to its AOF.
WAITAOF counts the writes of its own connection only, hence the pipeline; a
batch's one script is one write, so one fsync covers the whole batch.

Replica acknowledgement (cluster mode, STAMPEDE_CLUSTER_WAIT_REPLICAS): the
same scripts are followed by `WAIT n timeout` on their connection to their
primary (state/on_primary.py), so a claim is answered only once a replica
has it and a failover cannot lose it. WAITAOF, when durable ack is on too,
travels the same way.
"""

import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from stampede import lua
from stampede.errors import ConfigError, UnavailableError
from stampede.metrics import count_replica_wait_timeout
from stampede.state import luagen
from stampede.state.connection import is_cluster
from stampede.state.on_primary import Command, on_primary

log = logging.getLogger("stampede.scripts")

_INCLUDE = re.compile(r"^--@include (\w+)\s*$", re.MULTILINE)

OPERATIONS = (
    "claim_batch",
    "confirm",
    "cancel",
    "sweep",
    "adjust_stock",
    "define_campaign",
    "patch_campaign",
    "read_status",
    "throttle",
    "waitlist_join",
    "waitlist_leave",
    "waitlist_status",
    "queue_ticket",
    "coupon_claim",
    "coupon_redeem",
    "coupon_rollback",
    "coupon_gift_offer",
    "coupon_gift_accept",
    "coupon_expire",
    "coupon_lookup",
    # codes users type
    "coupon_referral_code",
    "coupon_patch",  # coupon rules: live template changes
    "coupon_extend",  # leftovers: a validity extension, in bounded batches
    "coupon_rules_lookup",  # coupon rules: coupons with their rules and the clock
    # after-sale
    "refund",
    "checkin",
    "transfer_offer",
    "transfer_accept",
    "grant",
    "presale_codes_issue",
    "segment_edit",
    # paid vouchers
    "coupon_pay",
    "coupon_refund",
    "allocation_return",  # presales: allocations
    "claim_bundle",  # presales: bundles
    # sharded campaigns: the two sides of a move of units between shards
    "shard_lend",
    "shard_borrow",
    "rebalance_lease",
)


# Durable ack: scripts that need no fsync before their answer. They read, or
# only tidy up what can be derived again (lapsed holds, due waves) or what may
# be lost without harm (rate-limiter state: a lost step loosens a limit once).
NOT_ACKNOWLEDGED = frozenset({
    "read_status", "waitlist_status", "coupon_lookup", "coupon_rules_lookup", "throttle",
    "sweep",
    "coupon_extend",  # (what it writes follows from coupon_drop_patched: recovery redoes it)
})


class NotDurableError(UnavailableError):
    """WAITAOF did not confirm the write on disk in time: 503 unavailable. The
    write may stand: a retry with the same idempotency key gets its answer."""


class NotReplicatedError(UnavailableError):
    """WAIT did not see the write on enough replicas in time (a replica down or far
    behind): 503 unavailable, as NotDurableError."""


def render(name: str) -> str:
    """The full text of an operation, with its includes pasted in place."""
    return render_text(lua.source_path(name).read_text())


def render_text(text: str, extra: dict[str, Callable[[], str]] | None = None) -> str:
    """`text` with each `--@include NAME` replaced by that fragment, itself expanded:
    a generated one (stampede/state/luagen.py, or `extra`) or lua/include/NAME.lua.
    Each fragment is pasted once, where it is first included."""
    generated = {**luagen.FRAGMENTS, **(extra or {})}
    seen: set[str] = set()

    def paste(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in seen:
            return ""
        seen.add(name)
        body = generated[name]() if name in generated else lua.include_path(name).read_text()
        return _INCLUDE.sub(paste, body)

    return _INCLUDE.sub(paste, text)


class Script:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = render(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


class ScriptRegistry:
    """Holds every operation's source and SHA; runs them with EVALSHA."""

    def __init__(self, redis: "Redis", durable_ack_ms: int = 0, replicas: int = 0,
                 replica_timeout_ms: int = 1000) -> None:
        self._redis = redis
        self.durable_ack_ms = durable_ack_ms
        """> 0: wait (at most this long) for each acknowledged write's fsync."""
        self.cluster = is_cluster(redis)
        self.replicas = replicas if self.cluster else 0
        """Cluster mode: replicas that must have each acknowledged write (WAIT)."""
        self.replica_timeout_ms = replica_timeout_ms
        self.scripts = {name: Script(name) for name in OPERATIONS}
        self.loaded = False
        self.observer: Callable[[str, float], None] | None = None
        """Called with (script, seconds) after each run: the gateway's metrics hook."""

    async def load_all(self) -> None:
        for script in self.scripts.values():
            sha = await self._redis.script_load(script.source)
            assert sha == script.sha, f"{script.name}: server SHA differs"
        if self.durable_ack_ms:
            await self._check_aof()
        if self.replicas:
            await self._check_replicas()
        self.loaded = True

    async def _check_replicas(self) -> None:
        """Say so at start when a primary has fewer replicas than each write waits for:
        its writes will answer 503 until one (re)joins. Not refused: right after a
        failover the promoted replica has none for a while, and a gateway restarted
        then must still start."""
        connected = await self._redis.execute_command(  # type: ignore[no-untyped-call]
            "INFO", "replication", target_nodes=RedisCluster.PRIMARIES)
        for node, info in cast(dict[str, dict[str, Any]], connected).items():
            have = int(info.get("connected_slaves", 0))
            if have < self.replicas:
                log.warning("primary %s has %d replicas and STAMPEDE_CLUSTER_WAIT_REPLICAS "
                            "is %d: its writes answer 503 until enough replicas join (0 "
                            "turns the wait off, and with it the failover guarantee)",
                            node, have, self.replicas)

    async def _check_aof(self) -> None:
        """Durable ack needs an AOF: refuse to start without one, rather than
        answer every write with an error (WAITAOF refuses numlocal 1 then)."""
        try:
            if self.cluster:
                await self._redis.execute_command(  # type: ignore[no-untyped-call]
                    "WAITAOF", 1, 0, self.durable_ack_ms, target_nodes=RedisCluster.PRIMARIES)
            else:
                await self._redis.waitaof(1, 0, self.durable_ack_ms)
        except ResponseError as exc:
            raise ConfigError(f"STAMPEDE_DURABLE_ACK needs Valkey 7.2+ with appendonly yes "
                              f"(WAITAOF answered: {exc})") from exc

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self.observer is None:
            return await self._run(name, keys, args)
        started = time.perf_counter()
        try:
            return await self._run(name, keys, args)
        finally:
            self.observer(name, time.perf_counter() - started)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self.scripts[name]
        if name not in NOT_ACKNOWLEDGED:
            if self.cluster and (self.replicas or self.durable_ack_ms):
                return await self._run_on_primary(script, keys, args)
            if self.durable_ack_ms:
                return await self._run_durable(script, keys, args)
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # The cache was flushed: load again and retry once. EVALSHA that
            # answered NOSCRIPT ran nothing, so the retry cannot double-apply.
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)

    async def _run_durable(self, script: Script, keys: Sequence[str],
                           args: Sequence[Any]) -> Any:
        """EVALSHA then WAITAOF on one connection; the script's reply once on disk."""
        for attempt in (0, 1):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.waitaof(1, 0, self.durable_ack_ms)
                reply, synced = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and not attempt:
                # As in `_run`: NOSCRIPT ran nothing; load and go again.
                await self._redis.script_load(script.source)
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(synced, Exception):
                raise synced  # e.g. appendonly off: a setup error, not a 503
            if int(synced[0]) < 1:
                raise NotDurableError(f"{script.name}: Valkey did not confirm the write "
                                      f"on disk within {self.durable_ack_ms} ms")
            return reply
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _run_on_primary(self, script: Script, keys: Sequence[str],
                              args: Sequence[Any]) -> Any:
        """Cluster mode: EVALSHA, then WAIT and/or WAITAOF, on one connection to the
        primary of the script's slot; the script's reply once acknowledged."""
        commands: list[Command] = [("EVALSHA", script.sha, len(keys), *keys, *args)]
        if self.replicas:
            commands.append(("WAIT", self.replicas, self.replica_timeout_ms))
        if self.durable_ack_ms:
            commands.append(("WAITAOF", 1, 0, self.durable_ack_ms))
        for attempt in (0, 1):
            reply, *acks = await on_primary(self._redis, keys[0], commands)
            if isinstance(reply, NoScriptError) and not attempt:
                # A promoted replica has no scripts: NOSCRIPT ran nothing; load, go again.
                await self._redis.script_load(script.source)
                continue
            if isinstance(reply, Exception):
                raise reply
            for ack in acks:
                if isinstance(ack, Exception):
                    raise ack  # e.g. appendonly off: a setup error, not a 503
            if self.replicas and int(acks[0]) < self.replicas:
                count_replica_wait_timeout("write")
                raise NotReplicatedError(
                    f"{script.name}: {acks[0]} of {self.replicas} replicas confirmed the "
                    f"write within {self.replica_timeout_ms} ms")
            if self.durable_ack_ms and int(acks[-1][0]) < 1:
                raise NotDurableError(f"{script.name}: Valkey did not confirm the write "
                                      f"on disk within {self.durable_ack_ms} ms")
            return reply
        raise AssertionError("unreachable")  # the loop returns or raises
