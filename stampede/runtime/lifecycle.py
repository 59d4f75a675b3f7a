"""What a gateway process holds, one aiohttp cleanup context per resource.

`serve` runs these contexts on a listener-less "process" application before
the public and admin apps open, and closes them (in reverse) after both
have drained:

    engine → store → durable client (heals first) → persister child → webhook
    delivery child → periodic tasks

Each context puts what it opens on the process app under a typed key, so a
later context (or a supervisor) finds it there.
"""

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

from stampede import Engine, Settings, logs
from stampede.api.context import ENGINE
from stampede.durable.points_client import HttpPoints
from stampede.durable.store import Store, open_store
from stampede.periodic import every
from stampede.runtime import gauges
from stampede.runtime.persistence import durable_tasks, heal_now, state_client
from stampede.runtime.process import die_with_parent

Context = Callable[[web.Application], AsyncIterator[None]]
Job = tuple[float, Callable[[], Awaitable[object]], str]
"""(interval in seconds, the coroutine to run, its name in logs)"""

STORE = web.AppKey("store", Store)
DURABLE_REDIS = web.AppKey("durable_redis", Redis)
"""The housekeeping worker's own client for healing, reconcile and lag."""

PERSISTER_NICE = 10
"""The persister yields the CPU to the gateway when both want it: it only has to
keep up on average (its lag is a metric), while a request waits on every ms. On
the 2-core bench VM, with group commit in the batcher, p50 at half the peak rate
went from ~27 ms to ~2.3 ms (bench/README.md)."""


def contexts(settings: Settings, redis_url: str, housekeeping: bool) -> list[Context]:
    """The process's resources in start order; the housekeeping worker also heals,
    persists and runs the periodic tasks."""
    found: list[Context] = [engine_context(settings, redis_url),
                            store_context(settings, migrate=housekeeping)]
    if housekeeping:
        found.append(durable_context(settings, redis_url))
        if settings.persister:
            found.append(persister_context(settings, redis_url))
        if settings.webhook_worker:
            found.append(delivery_context(settings, redis_url))
        found.append(periodic_context(settings))
    return found


def engine_context(settings: Settings, redis_url: str) -> Context:
    async def run(app: web.Application) -> AsyncIterator[None]:
        engine = Engine.from_url(redis_url, settings)
        if settings.points_url:
            engine.coupons.points = HttpPoints(settings.points_url, settings.points_timeout_s,
                                               settings.points_token)
        try:
            await engine.start()
            app[ENGINE] = engine
            yield
        finally:
            await engine.close()
            if engine.coupons.points is not None:
                await engine.coupons.points.close()
    return run


def store_context(settings: Settings, migrate: bool) -> Context:
    """Every worker opens the store (for /readyz); only the housekeeping one migrates it."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(settings.resolved_store_url, migrate=migrate)
        app[STORE] = store
        try:
            yield
        finally:
            await store.close()
    return run


def durable_context(settings: Settings, redis_url: str) -> Context:
    """Campaigns whose Redis state is older than the store are fenced and rebuilt
    before the listeners open."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        redis = state_client(redis_url, settings)
        try:
            await heal_now(redis, app[STORE], settings)
            app[DURABLE_REDIS] = redis
            yield
        finally:
            await redis.aclose()
    return run


def persister_context(settings: Settings, redis_url: str) -> Context:
    """The persister beside us as a child process: its batches are CPU work that
    would otherwise stall this event loop (p99 120 ms -> 18 ms)."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        child = PersisterChild(redis_url)
        child.start()
        app[PERSISTER] = child
        try:
            yield
        finally:
            await asyncio.to_thread(child.stop, settings.shutdown_grace_s)
    return run


def delivery_context(settings: Settings, redis_url: str) -> Context:
    """The webhook delivery worker beside us as a child process (`stampede deliver`):
    it waits on endpoints and the store, never on this event loop."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        child = PersisterChild(redis_url, command="deliver")
        child.start()
        app[DELIVERER] = child
        try:
            yield
        finally:
            await asyncio.to_thread(child.stop, settings.shutdown_grace_s)
    return run


def periodic_context(settings: Settings) -> Context:
    """The sweeper, the gauges, and healing, reconcile and lag: until the process stops."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        engine = app[ENGINE]
        stop = asyncio.Event()
        jobs: list[Job] = [(settings.hold_sweep_interval_ms / 1000, engine.sweep_all,
                            "sweeper")]
        if settings.metrics:
            jobs.append((gauges.INTERVAL_S, lambda: gauges.refresh_gauges(engine), "gauges"))
            jobs.append((gauges.INTERVAL_S, lambda: gauges.refresh_store_gauges(app[STORE]),
                         "store-gauges"))
        tasks = [asyncio.create_task(every(interval, job, stop, name))
                 for interval, job, name in jobs]
        tasks += durable_tasks(app[DURABLE_REDIS], app[STORE], settings, stop, False,
                               settings.metrics)
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    return run


@dataclass
class PersisterChild:
    """`stampede persist` (or another `command`, e.g. `deliver`) as our child, at a lower
    priority; the kernel stops it if we die."""
    redis_url: str
    proc: "subprocess.Popen[bytes] | None" = field(default=None, repr=False)
    command: str = "persist"

    def start(self) -> None:
        env = {**os.environ, "STAMPEDE_REDIS_URL": self.redis_url}
        name = "persister" if self.command == "persist" else self.command
        self.proc = subprocess.Popen([sys.executable, "-m", "stampede.runtime.cli",
                                      self.command],
                                     env=env, preexec_fn=_persister_child,
                                     stderr=subprocess.PIPE)
        # Whatever the child writes reaches our stderr as JSON lines (its logs already are).
        assert self.proc.stderr is not None
        threading.Thread(target=logs.relay, args=(self.proc.stderr, name), daemon=True,
                         name=f"{name}-stderr").start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float) -> None:
        """SIGTERM (the persister finishes its batch and acknowledges it), then SIGKILL."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


PERSISTER = web.AppKey("persister", PersisterChild)
DELIVERER = web.AppKey("deliverer", PersisterChild)


def _persister_child() -> None:
    die_with_parent()
    os.nice(PERSISTER_NICE)
    if hasattr(os, "SCHED_BATCH"):  # Linux
        # Same share of the CPU, but it never preempts on waking (after a read or
        # an fsync): the gateway or Valkey it would interrupt keeps its core until
        # its slice ends, and a request in flight does not wait behind a commit.
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
