"""Run one gateway process: engine, housekeeping, the two listeners, graceful drain."""

import asyncio
import gc
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from stampede import Engine, Settings
from stampede.api.app import make_admin_app, make_public_app
from stampede.api.auth import Authenticator
from stampede.api.context import STORE_CHECK
from stampede.api.metrics import refresh_gauges
from stampede.api.runner import JsonErrorRunner
from stampede.durable.store import open_store
from stampede.logs import log
from stampede.periodic import every
from stampede.runtime.persistence import durable_tasks, heal_now, state_client
from stampede.runtime.process import die_with_parent


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8000
    admin_port: int = 8001
    reuse_port: bool = False
    """Several worker processes share the ports (SO_REUSEPORT)."""
    housekeeping: bool = True
    """Run the sweeper and gauges here (one worker of several does)."""


async def serve(settings: Settings, redis_url: str, auth: Authenticator, listen: Listen,
                on_started: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then fail readiness, finish in-flight requests, exit."""
    engine = Engine.from_url(redis_url, settings)
    await engine.start()
    # The durable store, with the worker that does housekeeping: campaigns whose
    # Redis state is older than the store are fenced and rebuilt before we listen.
    # Every worker opens the store (for /readyz); only the housekeeping one migrates it.
    store = await open_store(settings.resolved_store_url, migrate=listen.housekeeping)
    durable_redis = state_client(redis_url) if listen.housekeeping else None
    if durable_redis is not None:
        await heal_now(durable_redis, store, settings)
    ready = {"draining": False}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    grace = settings.shutdown_grace_s
    runners = [
        JsonErrorRunner(make_public_app(engine, auth, ready, settings.max_body_bytes,
                                      settings.metrics),
                      access_log=None, shutdown_timeout=grace, handle_signals=False),
        JsonErrorRunner(make_admin_app(engine, auth, ready, metrics=settings.metrics),
                      access_log=None, shutdown_timeout=grace, handle_signals=False),
    ]
    for runner in runners:
        runner.app[STORE_CHECK] = store.ping
    tasks = _housekeeping(engine, settings, stop) if listen.housekeeping else []
    persister = None
    if durable_redis is not None:
        # The persister runs beside us as a child process: its batches are CPU
        # work that would otherwise stall this event loop (p99 120 ms -> 18 ms).
        persister = _spawn_persister(redis_url) if settings.persister else None
        tasks += durable_tasks(durable_redis, store, settings, stop, False, settings.metrics)
    try:
        for runner, port in zip(runners, (listen.port, listen.admin_port), strict=True):
            await runner.setup()
            await web.TCPSite(runner, listen.host, port, reuse_port=listen.reuse_port).start()
        log.info("listening", port=listen.port, admin_port=listen.admin_port)
        _freeze_startup_heap()
        if on_started:
            on_started()
        await stop.wait()
        # Readiness fails first so a balancer stops sending; then the
        # listeners close and in-flight requests get `grace` to finish.
        ready["draining"] = True
        log.info("draining", delay_ms=settings.drain_delay_ms, grace_s=grace)
        await asyncio.sleep(settings.drain_delay_ms / 1000)
    finally:
        stop.set()
        for runner in runners:
            await runner.cleanup()
        await asyncio.gather(*tasks, return_exceptions=True)
        if persister is not None:
            await asyncio.to_thread(_stop_child, persister, grace)
        await engine.close()
        if durable_redis is not None:
            await durable_redis.aclose()
        await store.close()
        log.info("stopped")


def _housekeeping(engine: Engine, settings: Settings,
                  stop: asyncio.Event) -> list["asyncio.Task[None]"]:
    jobs: list[tuple[float, Callable[[], Awaitable[object]], str]] = [
        (settings.hold_sweep_interval_ms / 1000, engine.sweep_all, "sweeper")]
    if settings.metrics:
        jobs.append((2.0, lambda: refresh_gauges(engine), "gauges"))
    return [asyncio.create_task(every(interval, job, stop, name))
            for interval, job, name in jobs]


PERSISTER_NICE = 10
"""The persister yields the CPU to the gateway when both want it: it only has to
keep up on average (its lag is a metric), while a request waits on every ms. On
the 2-core bench VM, with group commit in the batcher, p50 at half the peak rate
went from ~27 ms to ~2.3 ms (bench/README.md)."""


def _spawn_persister(redis_url: str) -> "subprocess.Popen[bytes]":
    """`stampede persist` as our child, at a lower priority; the kernel stops it if we die."""
    env = {**os.environ, "STAMPEDE_REDIS_URL": redis_url}
    return subprocess.Popen([sys.executable, "-m", "stampede.runtime.cli", "persist"], env=env,
                            preexec_fn=_persister_child)


def _persister_child() -> None:
    die_with_parent()
    os.nice(PERSISTER_NICE)


def _stop_child(proc: "subprocess.Popen[bytes]", grace_s: float) -> None:
    """SIGTERM (the persister finishes its batch and acknowledges it), then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _freeze_startup_heap() -> None:
    """Move everything built at start-up (modules, apps, specs) out of the collector's view.

    A full collection walks every tracked object; ~130k of them are start-up
    objects that live forever. Frozen, they are never walked again, and the
    gen2 pauses that showed up as p99 latency (~70-140 ms on the bench VM)
    shrink to the size of what requests keep alive.
    """
    gc.collect()
    gc.freeze()
