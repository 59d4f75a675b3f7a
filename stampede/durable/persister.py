"""The persister: campaign event streams → the durable store, through a consumer group.

    read (XREADGROUP, all campaign streams) → one store transaction → XACK

An entry is acknowledged only after its transaction commits, so a persister
killed at any point leaves its entries pending; another (or the restarted
one) takes them over with XAUTOCLAIM once they sit idle. Replays are
harmless (see engine.store.projection). An entry that keeps failing on its
own while Redis and the store are healthy goes to `dead_letters` and is
acknowledged, so it cannot loop. A failure of Redis or of the store is an
outage, never the entry's fault: the entries wait in memory (and pending in
Redis) and the loop backs off and retries until the outage ends, however
long. Streams are trimmed only below the oldest pending entry.

Several persisters may run at once: the group spreads entries among them.
On one server one XREADGROUP reads every stream; on a cluster a command's keys
must share a slot, so each stream (each campaign's slot, on whichever node
holds it) is read by its own XREADGROUP, all at once, polled while idle. With
replica acknowledgement (STAMPEDE_CLUSTER_WAIT_REPLICAS) each such read is
followed by WAIT on its connection, and entries are stored only once a
replica has them (`_replicated`).
"""

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import text

from stampede.durable.events import Event, from_entry, from_flat
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.metrics import DEAD_LETTERS, PERSISTED, count_replica_wait_timeout
from stampede.periodic import every
from stampede.settings import Settings
from stampede.state import keys
from stampede.state.connection import is_cluster, is_transient
from stampede.state.on_primary import Command, on_primary

GROUP = "persister"
CLUSTER_POLL_MS = 20
"""Cluster mode: how long the persister waits before it reads idle streams again."""
log = logging.getLogger("stampede.persister")
_json = msgspec.json.Encoder()


Entry = tuple[str, str, list[str]]
"""(stream key, entry id, fields as the server sends them: name, value, name, value, ...)"""
Items = list[tuple[str, dict[str, str]]]
"""An XRANGE reply: (entry id, fields); str, as the client decodes responses"""


@dataclass(frozen=True)
class Lag:
    """How far the store is behind one campaign's stream."""
    campaign_id: str
    oldest_age_s: float
    """Age of the oldest event not yet acknowledged (0 when none)."""
    pending: int
    """Events not yet acknowledged: delivered and pending, plus not yet delivered."""


class Outage(Exception):
    """Redis or the store failed: the entries in hand wait for the next round."""


def _is_outage(exc: BaseException) -> bool:
    """Redis or the store unreachable, not a bug: Outage, or a connection error."""
    return isinstance(exc, Outage | OSError) or is_transient(exc) or \
        (isinstance(exc, RedisError) and not isinstance(exc, ResponseError))


def campaign_of_stream(key: str) -> str:
    return key[len("{c:"):key.index("}")]


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class Persister:
    def __init__(self, redis: "Redis", store: Store, settings: Settings,
                 consumer: str | None = None) -> None:
        self.redis = redis  # decode_responses=True
        # The same connections, replies as the server sends them: a read of
        # thousands of entries makes no dict per entry (the events decoder reads
        # the flat field lists).
        self.cluster = is_cluster(redis)
        self._wire = redis if self.cluster else Redis(connection_pool=redis.connection_pool)
        if not self.cluster:  # (cluster mode reads each stream through `redis`)
            self._wire.response_callbacks.clear()
        self.linger_s = settings.persist_linger_ms / 1000
        """In run(): after a short read, wait this long before the next, so a
        steady trickle is stored in fewer, larger transactions."""
        self._lingering = False
        self.store = store
        self.batch = settings.persist_batch
        self.claim_idle_ms = settings.persist_claim_idle_ms
        self.max_attempts = settings.persist_max_attempts
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.streams: list[str] = []
        self._grouped: set[str] = set()
        self._retry: list[Entry] = []
        self._prefetch: asyncio.Task[list[Entry]] | None = None
        self._failures: dict[tuple[str, str], int] = {}
        self.persisted = 0
        self.batches = 0
        """Store transactions committed."""
        self.dead_lettered = 0
        self.outages = 0
        self.replicas = settings.cluster_wait_replicas if self.cluster else 0
        """Cluster mode: store only events this many replicas have (see _replicated)."""
        self.replica_timeout_ms = settings.cluster_wait_timeout_ms
        self.unreplicated = 0
        """Reads whose entries a replica did not confirm in time (left pending)."""
        self._quiet_until = 0.0
        self.last_progress = time.monotonic()
        """When a batch last reached the store (or there was nothing to do)."""

    # -- the loop ------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Persist until `stop` is set; housekeeping runs beside the read loop."""
        self._lingering = True  # (drain and tests' steps read again at once)
        await self._first_refresh(stop)
        chores = [asyncio.create_task(every(1.0, self.refresh_streams, stop, "persister-index")),
                  asyncio.create_task(every(max(self.claim_idle_ms / 2000, 0.5),
                                            self.take_over, stop, "persister-autoclaim")),
                  asyncio.create_task(every(5.0, self.trim, stop, "persister-trim"))]
        backoff = 0.1
        try:
            while not stop.is_set():
                try:
                    await self.step(block_ms=100)
                    backoff = 0.1
                except Exception as exc:  # Redis or the store is down: wait and retry
                    self.outages += 1
                    if _is_outage(exc):  # expected while it lasts: one line, no trace
                        log.warning("persister waiting for Redis or the store: %r; "
                                    "retrying in %.1fs", exc, backoff)
                    else:
                        log.exception("persister round failed; retrying in %.1fs", backoff)
                    try:
                        await asyncio.wait_for(stop.wait(), backoff)
                    except TimeoutError:
                        pass
                    backoff = min(backoff * 2, 5.0)
        finally:
            await asyncio.gather(*chores, return_exceptions=True)
            try:
                await asyncio.wait_for(self.finish(), 10)
            except Exception:  # left pending: another persister takes it over
                log.warning("could not finish the last batch", exc_info=True)

    async def _first_refresh(self, stop: asyncio.Event) -> None:
        """Read the campaign index before the first round, retrying while Redis is
        unreachable: a persister that started during an outage (a cluster node not yet
        answering) must wait for it, not end."""
        backoff = 0.1
        while not stop.is_set():
            try:
                await self.refresh_streams()
                return
            except Exception as exc:
                if not _is_outage(exc):
                    raise
                log.warning("persister waiting for Redis: %r; retrying in %.1fs", exc, backoff)
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 5.0)

    async def drain(self, timeout_s: float = 60.0) -> None:
        """Persist everything in every stream now, including other consumers' pending."""
        deadline = time.monotonic() + timeout_s
        await self.refresh_streams()
        await self.take_over(min_idle_ms=0)
        while await self.step(block_ms=0) or self._retry:
            if time.monotonic() > deadline:
                raise TimeoutError("persister could not drain in time")
        await self.trim()

    async def step(self, block_ms: int = 0) -> int:
        """One round: retry what failed, read new entries, commit, acknowledge."""
        if self._retry:
            entries, self._retry = self._retry, []
            await self._process(entries)
            return len(entries)
        if not self.streams:
            if block_ms:
                await asyncio.sleep(block_ms / 1000)
            return 0
        entries = []
        if self._prefetch is not None:
            # Detach the task before awaiting it: a read that failed (Redis went
            # away) must raise once, not again on every later round.
            prefetch, self._prefetch = self._prefetch, None
            entries = await prefetch
        if not entries:
            entries = await self._read(block_ms)
        if entries:
            # Read the next batch while this one commits: Redis and the store overlap.
            # A short batch means we are caught up: let the next one gather a while.
            linger = self.linger_s if self._lingering and len(entries) < self.batch else 0.0
            self._prefetch = asyncio.create_task(self._read(0, linger))
            await self._process(entries)
        else:
            self.last_progress = time.monotonic()  # caught up
        return len(entries)

    async def finish(self) -> None:
        """Commit what was read ahead, so a clean stop leaves nothing pending."""
        while self._prefetch is not None or self._retry:
            await self.step()

    def discard_prefetch(self) -> None:
        """Drop a read-ahead in flight (its entries stay pending in Redis)."""
        if self._prefetch is not None:
            self._prefetch.cancel()
            self._prefetch = None

    async def _read(self, block_ms: int, after_s: float = 0.0) -> list[Entry]:
        if after_s:
            await asyncio.sleep(after_s)
        if self.cluster:
            return await self._read_each(block_ms)
        streams = self.streams
        block = ("BLOCK", block_ms) if block_ms else ()
        try:
            reply = await self._wire.execute_command(
                "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", self.batch, *block,
                "STREAMS", *streams, *(">",) * len(streams))  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._grouped.clear()  # Redis lost our groups (emptied or rebuilt)
            await self.refresh_streams()
            return []
        # RESP3 answers {stream: entries}, RESP2 [[stream, entries], ...]; an
        # entry deleted meanwhile has no fields.
        found = cast(Iterable[tuple[str, list[tuple[str, list[str] | None]]]],
                     reply.items() if isinstance(reply, dict) else reply or ())
        return [(key, eid, fields) for key, items in found for eid, fields in items
                if fields is not None]

    async def _read_each(self, block_ms: int) -> list[Entry]:
        """Cluster mode: one XREADGROUP per stream, all at once; when every stream is
        idle, wait up to CLUSTER_POLL_MS (not `block_ms`: a blocking read per stream
        would hold a connection per campaign) and look again once."""
        for attempt in (0, 1):
            replies = await asyncio.gather(*(self._read_one(key) for key in self.streams))
            entries = [entry for reply in replies for entry in reply]
            if entries or not block_ms or attempt:
                return entries
            await asyncio.sleep(min(block_ms, CLUSTER_POLL_MS) / 1000)
        return []

    async def _read_one(self, key: str) -> list[Entry]:
        try:
            if self.replicas:
                reply = await self._replicated(key, (
                    "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", self.batch,
                    "STREAMS", key, ">"))
            else:
                reply = await self.redis.xreadgroup(GROUP, self.consumer, {key: ">"},
                                                    count=self.batch)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._grouped.discard(key)  # this stream lost our group (emptied or rebuilt)
            await ensure_group(self.redis, key)
            self._grouped.add(key)
            return []
        streams = cast(list[tuple[str, list[tuple[str, dict[str, str] | None]]]], reply or [])
        return [(key, eid, _flat(fields)) for _, items in streams for eid, fields in items
                if fields is not None]

    async def _replicated(self, key: str, read: Command) -> Any:
        """Cluster mode with replica acknowledgement: `read` (XREADGROUP, XAUTOCLAIM) then
        WAIT on one connection to the stream's primary. The read hands entries to us,
        which the primary replicates after the entries themselves, so WAIT confirms a
        replica has every entry read. Only then are they stored: the store never holds
        an event that a failover can take out of Redis (its sequence number would be
        written again by the promoted replica). Unconfirmed entries stay pending and
        come back through take_over; None then."""
        reply, acked = await on_primary(self.redis, key, [
            read, ("WAIT", self.replicas, self.replica_timeout_ms)])
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self.replicas:
            self.unreplicated += 1
            count_replica_wait_timeout("persister")
            if time.monotonic() >= self._quiet_until:  # once per 10 s, not per stream and read
                self._quiet_until = time.monotonic() + 10
                log.warning("%s: entries read are on %s of %d replicas after %d ms; left "
                            "pending (%d such reads so far)", key, acked, self.replicas,
                            self.replica_timeout_ms, self.unreplicated)
            return None
        return reply

    # -- commit, acknowledge, dead-letter -----------------------------------

    async def _process(self, entries: Sequence[Entry], suspect: bool = False) -> None:
        """Commit and acknowledge `entries`; dead-letter only those that fail on their own.

        Raises Outage (the entries kept for the next round) when Redis or the
        store fails: an outage never counts against an entry."""
        if not entries:
            return
        if not suspect:
            try:
                await self._commit(entries)
                return
            except Exception as exc:
                await self._unless_outage(exc, entries)
                log.warning("batch of %d failed; retrying entries one by one", len(entries),
                            exc_info=True)
        for i, entry in enumerate(entries):
            try:
                await self._commit([entry])
                continue
            except Exception as exc:  # this entry alone fails: count it, unless an outage
                await self._unless_outage(exc, entries[i:])
                error = exc
            key = (entry[0], entry[1])
            self._failures[key] = self._failures.get(key, 0) + 1
            if suspect or self._failures[key] >= self.max_attempts:
                try:
                    await self._dead_letter(entry, error, self._failures.pop(key))
                except Exception as exc:
                    self._failures[key] = self.max_attempts  # still due once things work
                    await self._unless_outage(exc, entries[i:])
                    raise
            else:
                self._retry.append(entry)

    async def _unless_outage(self, exc: Exception, entries: Sequence[Entry]) -> None:
        """Raise Outage, keeping `entries` for a later round, if Redis or the store is down."""
        if _is_outage(exc) or not await self.store_healthy() \
                or not await self.redis_healthy():
            self.discard_prefetch()
            held = {(k, eid) for k, eid, _ in entries}
            self._retry = list(entries) + [e for e in self._retry if (e[0], e[1]) not in held]
            raise Outage(f"{type(exc).__name__}: {exc}") from exc

    async def _commit(self, entries: Sequence[Entry]) -> None:
        cids = {key: campaign_of_stream(key) for key in {e[0] for e in entries}}
        events = [from_flat(cids[key], eid, fields) for key, eid, fields in entries]
        async with self.store.begin() as conn:
            await store_events(conn, self.store, events)
        await self._ack(entries)
        self.persisted += len(events)
        self.batches += 1
        self.last_progress = time.monotonic()
        PERSISTED.inc(len(events))

    async def _ack(self, entries: Iterable[Entry]) -> None:
        by_key: dict[str, list[str]] = {}
        for key, eid, _ in entries:
            by_key.setdefault(key, []).append(eid)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, ids in by_key.items():
                pipe.xack(key, GROUP, *ids)
            await pipe.execute()

    async def _dead_letter(self, entry: Entry, error: Exception, attempts: int) -> None:
        key, eid, fields = entry
        async with self.store.begin() as conn:
            await conn.execute(self.store.insert_ignore(t.dead_letters).values(
                stream=key, entry_id=eid, campaign_id=campaign_of_stream(key),
                fields=_json.encode(_as_dict(fields)).decode(), error=repr(error)[:2000],
                deliveries=attempts, ts=int(time.time() * 1000)))
        await self._ack([entry])
        self.dead_lettered += 1
        DEAD_LETTERS.inc()
        log.error("event %s %s dead-lettered after %d attempts: %r", key, eid, attempts, error)

    async def redis_healthy(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:  # noqa: BLE001 - any failure to reach Redis
            return False

    async def store_healthy(self) -> bool:
        try:
            async with self.store.read() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure to reach the store
            return False

    # -- housekeeping -----------------------------------------------------------

    async def refresh_streams(self) -> None:
        """Follow the campaign index; make sure every stream has our group."""
        cids = sorted(cast(set[str], await self.redis.smembers(keys.CAMPAIGN_INDEX)))
        streams = [keys.events_key(cid) for cid in cids]
        for key in streams:
            if key not in self._grouped:
                await ensure_group(self.redis, key)
                self._grouped.add(key)
        self.streams = streams

    async def take_over(self, min_idle_ms: int | None = None) -> int:
        """XAUTOCLAIM entries idle too long under another (dead) consumer, and persist them.

        An entry delivered `max_attempts` times or more is tried alone and
        dead-lettered if it fails again: it may be what killed its consumers.
        """
        idle = self.claim_idle_ms if min_idle_ms is None else min_idle_ms
        taken = 0
        for key in list(self.streams):
            start = "0-0"
            while True:
                try:
                    if self.replicas:
                        reply = await self._replicated(key, (
                            "XAUTOCLAIM", key, GROUP, self.consumer, idle, start,
                            "COUNT", self.batch))
                        if reply is None:  # not on a replica yet: the next round
                            break
                    else:
                        reply = await self.redis.xautoclaim(key, GROUP, self.consumer, idle,
                                                            start, count=self.batch)
                except ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        break
                    raise
                start, items = reply[0], [(key, e, _flat(f)) for e, f in reply[1]
                                          if f is not None]
                if items:
                    taken += len(items)
                    suspects = await self._suspects(key, [e for _, e, _ in items])
                    await self._process([i for i in items if i[1] not in suspects])
                    await self._process([i for i in items if i[1] in suspects], suspect=True)
                if start == "0-0":
                    break
        return taken

    async def _suspects(self, key: str, ids: Sequence[str]) -> set[str]:
        rows = cast(list[dict[str, Any]], await self.redis.xpending_range(
            key, GROUP, min=ids[0], max=ids[-1], count=len(ids) + 100, consumername=self.consumer))
        return {r["message_id"] for r in rows
                if r["times_delivered"] > self.max_attempts and r["message_id"] in set(ids)}

    async def trim(self) -> None:
        """Trim each stream below its oldest unacknowledged entry, never above."""
        for key in list(self.streams):
            floor = await trim_floor(self.redis, key)
            if floor is not None:
                await self.redis.xtrim(key, minid=floor, approximate=False)

    async def lags(self) -> list[Lag]:
        return [await lag(self.redis, keys_cid) for keys_cid in
                (campaign_of_stream(k) for k in list(self.streams))]


async def ensure_group(redis: "Redis", key: str) -> None:
    try:
        # From id 0: a stream's first entries may predate the group.
        await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def _group_info(redis: "Redis", key: str) -> dict[str, Any] | None:
    try:
        groups = await redis.xinfo_groups(key)
    except ResponseError:  # no such stream
        return None
    return next((g for g in groups if g["name"] == GROUP), None)


async def trim_floor(redis: "Redis", key: str) -> str | None:
    """The lowest id that must be kept: the oldest pending, else the last delivered."""
    group = await _group_info(redis, key)
    if group is None:
        return None
    floor = str(group["last-delivered-id"])
    if group["pending"]:
        oldest = (await redis.xpending(key, GROUP))["min"]
        if oldest is not None:
            floor = min(floor, str(oldest), key=lambda i: tuple(map(int, i.split("-"))))
    return None if floor == "0-0" else floor


async def lag(redis: "Redis", cid: str) -> Lag:
    """Oldest unacknowledged event age and the count of unacknowledged events."""
    key = keys.events_key(cid)
    now_s, now_us = await redis.time()
    now_ms = now_s * 1000 + now_us // 1000
    group = await _group_info(redis, key)
    if group is None:  # no persister has looked yet: everything is behind
        first = cast(Items, await redis.xrange(key, count=1))
        n = await redis.xlen(key)
        return Lag(cid, (now_ms - entry_ms(first[0][0])) / 1000 if first else 0.0, n)
    oldest: str | None = None
    if group["pending"]:  # (it may have been acknowledged since: then min is None)
        oldest = (await redis.xpending(key, GROUP))["min"]
    if oldest is None:
        nxt = cast(Items, await redis.xrange(key, min=f"({group['last-delivered-id']}", count=1))
        oldest = nxt[0][0] if nxt else None
    undelivered = group.get("lag")
    if undelivered is None:  # the server cannot tell: count them
        undelivered = len(cast(Items, await redis.xrange(
            key, min=f"({group['last-delivered-id']}")))
    age = max(0.0, (now_ms - entry_ms(oldest)) / 1000) if oldest else 0.0
    return Lag(cid, age, int(group["pending"]) + int(undelivered))


def _flat(fields: dict[str, str]) -> list[str]:
    return [x for pair in fields.items() for x in pair]


def _as_dict(flat: list[str]) -> dict[str, str]:
    pairs = iter(flat)
    return dict(zip(pairs, pairs, strict=False))


def entries_of(key: str, items: Iterable[tuple[str, dict[str, str]]]) -> list[Event]:
    """Stream items (XRANGE) as events: for recovery's drain."""
    cid = campaign_of_stream(key)
    return [from_entry(cid, eid, fields) for eid, fields in items]
