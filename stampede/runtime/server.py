"""Run one gateway process: its resources, the two listeners, graceful drain.

The resources (engine, store, persister child, periodic tasks) are cleanup
contexts of a listener-less process app (`stampede.runtime.lifecycle`); the
public and admin apps are built on what it opened, and are drained and
closed before it is.
"""

import asyncio
import functools
import gc
import signal
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from stampede import Settings, logs
from stampede.api.app import make_admin_app, make_public_app
from stampede.api.auth import Authenticator
from stampede.api.context import DETAILS, DURABLE, ENGINE, STORE_CHECK, WEBHOOKS
from stampede.api.healing import IN_STORE
from stampede.api.runner import JsonErrorRunner
from stampede.durable.recovery import in_store
from stampede.durable.webhooks import Webhooks
from stampede.errors import ServerError
from stampede.logs import log
from stampede.runtime import lifecycle, supervisor
from stampede.runtime.valkey import EmbeddedValkey


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8000
    admin_port: int = 8001
    reuse_port: bool = False
    """Several worker processes share the ports (SO_REUSEPORT)."""
    housekeeping: bool = True
    """Run the sweeper, healing, the persister and the gauges here (one worker of several)."""


def process_app(settings: Settings, redis_url: str, listen: Listen) -> web.Application:
    """The process's resources, one cleanup context each; no routes, no listener."""
    process = web.Application()
    process.cleanup_ctx.extend(lifecycle.contexts(settings, redis_url, listen.housekeeping))
    return process


async def serve(settings: Settings, redis_url: str, auth: Authenticator, listen: Listen,
                on_started: Callable[[], None] | None = None,
                valkey: EmbeddedValkey | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then fail readiness, finish in-flight requests, exit.

    `valkey`, the embedded server cli started, is restarted here if it dies."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(logs.asyncio_exceptions)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    resources = web.AppRunner(process_app(settings, redis_url, listen), handle_signals=False)
    runners: list[web.AppRunner] = []
    watchers: list[asyncio.Task[None]] = []
    failed = False
    try:
        await resources.setup()
        ready = {"draining": False}
        # Supervision of the children, and the persister's health for /readyz.
        sup, health, watchers = supervisor.watch(resources.app, settings, stop, ready, valkey)
        runners = _listeners(resources.app, settings, auth, ready,
                             health.details if health else None)
        for runner, port in zip(runners, (listen.port, listen.admin_port), strict=True):
            await runner.setup()
            await web.TCPSite(runner, listen.host, port, reuse_port=listen.reuse_port).start()
        log.info("listening", port=listen.port, admin_port=listen.admin_port)
        _freeze_startup_heap()
        if on_started:
            on_started()
        await stop.wait()
        # Readiness fails first so a balancer stops sending; then the
        # listeners close and in-flight requests get the grace to finish.
        ready["draining"] = True
        log.info("draining", delay_ms=settings.drain_delay_ms, grace_s=settings.shutdown_grace_s)
        await asyncio.sleep(settings.drain_delay_ms / 1000)
        failed = sup.failed
    finally:
        for runner in runners:
            await runner.cleanup()
        stop.set()  # (the watchers end with it)
        await asyncio.gather(*watchers, return_exceptions=True)
        await resources.cleanup()
        log.info("stopped")
    if failed:
        raise ServerError("the embedded Valkey kept dying; see valkey.log in the data directory")


def _listeners(process: web.Application, settings: Settings, auth: Authenticator,
               ready: dict[str, bool], details: dict[str, object] | None
               ) -> list[web.AppRunner]:
    """Runners of the public and admin apps, sharing the process's engine and store.

    aiohttp's keep-alive timer runs from a connection's start and from each answer,
    and closes a connection still waiting for a whole request: the header timeout.
    After a 408 (a body too slow, see read_body) it reads what is left of the body
    for at most the lingering time, then closes."""
    engine = process[ENGINE]
    store = process[lifecycle.STORE]
    apps = [make_public_app(engine, auth, ready, settings.max_body_bytes, settings.metrics),
            make_admin_app(engine, auth, ready, metrics=settings.metrics)]
    for app in apps:
        app[STORE_CHECK] = store.ping
        app[DURABLE] = store
        app[IN_STORE] = functools.partial(in_store, store)  # 503, not 404, while healing
        if details is not None:
            app[DETAILS] = details
    apps[1][WEBHOOKS] = Webhooks(store)
    return [JsonErrorRunner(app, access_log=None, shutdown_timeout=settings.shutdown_grace_s,
                            handle_signals=False,
                            keepalive_timeout=float(settings.header_timeout_s),
                            lingering_time=float(settings.body_timeout_s)) for app in apps]


def _freeze_startup_heap() -> None:
    """Move everything built at start-up (modules, apps, specs) out of the collector's view.

    A full collection walks every tracked object; ~130k of them are start-up
    objects that live forever. Frozen, they are never walked again, and the
    gen2 pauses that showed up as p99 latency (~70-140 ms on the bench VM)
    shrink to the size of what requests keep alive.
    """
    gc.collect()
    gc.freeze()
