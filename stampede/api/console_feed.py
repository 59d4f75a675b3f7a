"""The ops console's live feed: every campaign, coupon drop and the system, as SSE.

`GET /admin/v1/live?ticket=...` streams a `ConsoleState` (stampede.domain.console)
each tick it changes. As with the public feed (api/live.py), one poller per
worker runs only while a console is open, and every open console is fanned
out the same snapshot: whatever the number of consoles, a worker does one
pipelined Redis read per tick (every campaign's `read_status` and coupon
counters, and INFO memory) and one look at the metrics registry.
A changed snapshot is encoded once per tick and the poller writes the same
bytes to every console's socket (api/fanout.py): no handler is woken per
console, and a slow console skips to the newest snapshot rather than
queueing them.

The stream is opened with a ticket (api/console_ticket.py), not the admin
token, because EventSource cannot send headers.
"""

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from stampede import Engine
from stampede.api.console_ticket import TICKET_TTL_S, check, issue
from stampede.api.context import ADMIN, AUTH, DETAILS
from stampede.api.errors import ApiError, json_response
from stampede.api.fanout import GONE, RETRY_MS, Fanout, Frame, stream_response
from stampede.api.routing import ApiRoutes
from stampede.domain.console import (
    ConsoleCampaign,
    ConsoleState,
    ConsoleSystem,
    ConsoleWorker,
    by_campaign,
    campaign_view,
    rates_between,
)
from stampede.domain.coupons.service import stats_from
from stampede.domain.coupons.sharded import merged_cstats
from stampede.domain.status import CampaignSnapshot
from stampede.domain.throttle import in_force
from stampede.logs import log
from stampede.metrics import CONSOLE_LISTENERS, CONSOLE_READS, WORKER_STARTED, scrape_registry
from stampede.outcomes import Outcome
from stampede.state import keys
from stampede.state.connection import is_cluster, memory_info

api = ApiRoutes("console")

IDS_EVERY_S = 5.0
"""How often the set of campaigns is read again (new campaigns show within this)."""


def frame_of(state: ConsoleState) -> Frame:
    """One snapshot as an SSE frame, built once and written to every console as is."""
    data = msgspec.json.encode(state)
    # The id leaves out the reading's time: an unchanged service sends nothing new.
    digest = hashlib.blake2b(data[data.index(b","):], digest_size=8).hexdigest()
    return Frame.of(digest, b"id: " + digest.encode() + b"\nevent: state\ndata: " + data
                    + b"\n\n")


class LiveTicket(msgspec.Struct, kw_only=True):
    ticket: str
    expires_in_s: int


class ConsoleHub:
    """A worker's console feed: one poller while anyone listens, fanned out to all."""

    def __init__(self, engine: Engine, app: web.Application, max_listeners: int,
                 tick_s: float) -> None:
        self.engine, self.app = engine, app
        self.max_listeners, self.tick_s = max_listeners, tick_s
        self.registry: CollectorRegistry = scrape_registry(
            engine.settings.metrics_multiprocess_dir)
        self.listeners = 0
        self.fanout: Fanout | None = None
        self.first_read = asyncio.Event()
        self.closing = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.reads = 0
        """Pipelined Redis reads made so far (tests check one per tick, not per console)."""
        self._ids: list[str] = []
        self._ids_at = -IDS_EVERY_S
        self._counts: dict[str, tuple[float, dict[str, int]]] = {}
        self._http: tuple[float, float, float] | None = None

    @property
    def current(self) -> Frame | None:
        return self.fanout.current if self.fanout is not None else None

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[Fanout]:
        if self.listeners >= self.max_listeners:
            raise ApiError.of("console_full", limit=self.max_listeners)
        self.listeners += 1
        CONSOLE_LISTENERS.inc()
        if self.task is None or self.fanout is None:
            self.first_read.clear()
            self.fanout = Fanout()
            self.task = asyncio.create_task(self._poll(self.fanout), name="console-feed")
        fanout = self.fanout
        try:
            yield fanout
        finally:
            self.listeners -= 1
            CONSOLE_LISTENERS.dec()
            if not self.listeners and self.task is not None:
                task, self.task, self.fanout = self.task, None, None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def close(self) -> None:
        self.closing.set()
        if self.fanout is not None:
            self.fanout.end(GONE)

    async def _poll(self, fanout: Fanout) -> None:
        while True:
            try:
                state = await self.read()
            except Exception as exc:  # Redis away: keep the last state, try next tick
                log.warning("console feed read failed", error=repr(exc))
            else:
                frame = frame_of(state)
                if fanout.current is None or fanout.current.id != frame.id:
                    fanout.publish(frame)
            self.first_read.set()
            fanout.tick()
            await asyncio.sleep(self.tick_s)

    async def read(self) -> ConsoleState:
        """One tick: every campaign and the system, in one pipelined round trip."""
        redis = self.engine.redis
        now = time.monotonic()
        if now - self._ids_at >= IDS_EVERY_S:
            self._ids = sorted(cast(set[str], await redis.smembers(keys.CAMPAIGN_INDEX)))
            self._ids_at = now
            self._counts = {cid: v for cid, v in self._counts.items() if cid in self._ids}
        read_status = self.engine.scripts.scripts["read_status"]
        batch = self.engine.settings.sweep_batch
        if is_cluster(redis):
            replies = await self._read_cluster(self._ids, batch)
        else:
            async with redis.pipeline(transaction=False) as pipe:
                for cid in self._ids:
                    ck = keys.campaign_keys(cid)
                    pipe.evalsha(read_status.sha, len(ck), *ck, batch)
                    pipe.hgetall(keys.coupon_keys(cid).drop.cstats)
                pipe.info("memory")
                replies = await pipe.execute(raise_on_error=False)
        self.reads += 1
        CONSOLE_READS.inc()
        at = time.monotonic()
        snaps, drops = [], {}
        for i, cid in enumerate(self._ids):
            reply, cstats = replies[2 * i: 2 * i + 2]
            if isinstance(reply, Exception):  # NOSCRIPT after a flush: the engine reloads
                reply = await self.engine.scripts.run("read_status", keys.campaign_keys(cid),
                                                      [batch])
            if isinstance(cstats, Exception):
                raise cstats
            if reply[0] != Outcome.OK:  # gone since the ids were read
                continue
            snaps.append(CampaignSnapshot.from_reply(cid, reply))
            drops[cid] = cstats
        # A sharded campaign is one campaign: its shards added up (a drop's coupon
        # counters too), each shown beside.
        per_campaign: dict[str, list[dict[str, str]]] = {}
        for cid, cstats in drops.items():
            per_campaign.setdefault(keys.shard_of_id(cid)[0], []).append(cstats)
        campaigns = [msgspec.structs.replace(
            self._campaign(snap, merged_cstats(per_campaign.get(snap.id, [])), at),
            shards=parts) for snap, parts in by_campaign(snaps)]
        info = replies[-1]
        return ConsoleState(at_ms=int(time.time() * 1000), tick_s=self.tick_s,
                            campaigns=campaigns,
                            system=self._system({} if isinstance(info, Exception) else info, at))

    async def _read_cluster(self, ids: list[str], batch: int) -> list[Any]:
        """Cluster mode: the same replies, in the same order, as the pipeline's. redis-py
        pipelines no script on a cluster, so each campaign's reads go at once, each to
        its node; INFO memory is the fullest primary's."""
        scripts = self.engine.scripts

        async def one(cid: str) -> list[Any]:
            return list(await asyncio.gather(
                scripts.run("read_status", keys.campaign_keys(cid), [batch]),
                self.engine.redis.hgetall(keys.coupon_keys(cid).drop.cstats),
                return_exceptions=True))

        pairs = await asyncio.gather(*(one(cid) for cid in ids))
        return [reply for pair in pairs for reply in pair] + [
            await _cluster_memory(self.engine.redis)]

    def _campaign(self, snap: CampaignSnapshot, cstats: dict[str, str],
                  at: float) -> ConsoleCampaign:
        before = self._counts.get(snap.id)
        rates = rates_between(before[1] if before else None, snap.counts,
                              at - before[0] if before else 0.0)
        self._counts[snap.id] = (at, snap.counts)
        meta = snap.meta
        coupons = stats_from(snap.id, [meta.get("coupons"), meta.get("cp_budget")], cstats)
        return campaign_view(snap, rates, coupons,
                             in_force(meta.get("th", ""), meta.get("th_spec", "")))

    def _system(self, info: dict[str, Any], at: float) -> ConsoleSystem:
        metrics, workers = _metric_sums(self.registry)
        requests, errors = metrics["requests"], metrics["errors_5xx"]
        before, self._http = self._http, (at, requests, errors)
        rps = eps = 0.0
        if before is not None and at > before[0]:
            rps = max(0.0, requests - before[1]) / (at - before[0])
            eps = max(0.0, errors - before[2]) / (at - before[0])
        details = self.app.get(DETAILS) or {}
        persister = details.get("persister")
        maxmemory = int(info.get("maxmemory", 0) or 0)
        return ConsoleSystem(
            worker_pid=os.getpid(), workers=workers,
            redis_used_memory=_int_or_none(info.get("used_memory")),
            redis_maxmemory=maxmemory or None,
            persister=persister if isinstance(persister, dict) else {"state": "unknown"},
            persister_lag_s=round(metrics["lag"], 3), persister_pending=int(metrics["pending"]),
            reconcile_differences=int(metrics["reconcile"]),
            requests_per_s=round(rps, 2), errors_5xx_per_s=round(eps, 2),
            restarts={k[len("restarts:"):]: int(v) for k, v in metrics.items()
                      if k.startswith("restarts:")})


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _metric_sums(registry: CollectorRegistry) -> tuple[dict[str, float], list[ConsoleWorker]]:
    """The few numbers the console shows, summed over workers from the metrics registry,
    and each live worker (its start time and open consoles, by pid)."""
    out = {"requests": 0.0, "errors_5xx": 0.0, "lag": 0.0, "pending": 0.0, "reconcile": 0.0}
    started: dict[int, float] = {}
    consoles: dict[int, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "stampede_http_requests_total":
                out["requests"] += s.value
                if s.labels.get("status", "").startswith("5"):
                    out["errors_5xx"] += s.value
            elif s.name == "stampede_persister_lag_seconds":
                out["lag"] = max(out["lag"], s.value)
            elif s.name == "stampede_persister_pending_events":
                out["pending"] += s.value
            elif s.name == "stampede_reconcile_difference_units":
                out["reconcile"] += abs(s.value)
            elif s.name == "stampede_restarts_total":
                key = "restarts:" + s.labels.get("component", "?")
                out[key] = out.get(key, 0.0) + s.value
            elif s.name == "stampede_worker_start_time_seconds":
                started[_pid(s.labels)] = s.value
            elif s.name == "stampede_console_listeners":
                consoles[_pid(s.labels)] = s.value
    workers = [ConsoleWorker(pid=pid, started_ms=int(at * 1000),
                             console_listeners=int(consoles.get(pid, 0)))
               for pid, at in sorted(started.items()) if at > 0]
    return out, workers


def _pid(labels: dict[str, str]) -> int:
    """A sample's worker: its pid label under serve --workers, else this process."""
    pid = labels.get("pid", "")
    return int(pid) if pid.isdigit() else os.getpid()


CONSOLE = web.AppKey("console", ConsoleHub)


def install(app: web.Application, engine: Engine) -> None:
    hub = ConsoleHub(engine, app, engine.settings.console_max_listeners,
                     engine.settings.console_tick_ms / 1000)
    app[CONSOLE] = hub
    WORKER_STARTED.set(time.time())

    async def on_shutdown(app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(on_shutdown)


@api.route("POST", "/admin/v1/live/ticket",
           f"A ticket to open the console's live feed with (EventSource cannot send the "
           f"token); it lapses after {TICKET_TTL_S} s", auth="viewer", response=LiveTicket,
           errors=(401, 503), audit="none")  # signed and stateless: nothing changes
async def live_ticket(request: web.Request) -> web.Response:
    ticket = issue(request[ADMIN])
    return json_response(LiveTicket(ticket=ticket.value, expires_in_s=TICKET_TTL_S))


@api.route("GET", "/admin/v1/live",
           "The console's live feed (server-sent events): every campaign (stock, claims per "
           "second by outcome, waitlist, waiting room, coupon drop) and the system, each tick",
           response=ConsoleState, media_type="text/event-stream", errors=(400, 401, 503),
           query_params={"ticket": (r"^[A-Za-z0-9_.-]{1,200}$", True)})
async def live_feed(request: web.Request) -> web.StreamResponse:
    found = check(request.query["ticket"], request.app[AUTH].admin_tokens)
    if isinstance(found, str):
        raise ApiError.of("invalid_live_ticket", detail=found)
    hub = request.app[CONSOLE]
    async with hub.listen() as fanout:
        await hub.first_read.wait()
        response = stream_response(request)
        await response.prepare(request)
        first = f"retry: {RETRY_MS}\n".encode()
        sent = ""
        if fanout.current is not None:
            first += fanout.current.data
            sent = fanout.current.id
        # From here on the poller writes to the stream; this handler waits for its end.
        with contextlib.suppress(ConnectionResetError):
            stream = await fanout.attach(request, response, first, sent)
            if stream is not None:
                try:
                    if hub.closing.is_set():
                        await response.write(GONE)
                    else:
                        await stream.done
                finally:
                    fanout.detach(stream)
        return response
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with may not return)


async def _cluster_memory(redis: "Redis") -> dict[str, Any] | Exception:
    try:
        return await memory_info(redis)
    except RedisError as exc:  # as in the pipeline: the system panel shows no memory
        return exc
