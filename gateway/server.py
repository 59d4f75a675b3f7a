"""Run the service: Redis (embedded or configured), engine, sweeper, two listeners."""

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from engine import Engine, Settings
from engine.sweeper import run_sweeper
from gateway.app import make_admin_app, make_public_app
from gateway.auth import Authenticator


@dataclass(frozen=True)
class Listen:
    host: str = "127.0.0.1"
    port: int = 8000
    admin_port: int = 8001
    shutdown_grace_s: float = 10.0


async def serve(settings: Settings, redis_url: str, auth: Authenticator, listen: Listen,
                on_started: Callable[[], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then fail readiness, finish in-flight requests, exit."""
    engine = Engine.from_url(redis_url, settings)
    await engine.start()
    ready = {"draining": False}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runners = [
        web.AppRunner(make_public_app(engine, auth, ready, settings.max_body_bytes),
                      access_log=None, shutdown_timeout=listen.shutdown_grace_s),
        web.AppRunner(make_admin_app(engine, auth, ready), access_log=None,
                      shutdown_timeout=listen.shutdown_grace_s),
    ]
    sweeper = asyncio.create_task(
        run_sweeper(engine, settings.hold_sweep_interval_ms / 1000, stop))
    try:
        for runner, port in zip(runners, (listen.port, listen.admin_port), strict=True):
            await runner.setup()
            await web.TCPSite(runner, listen.host, port).start()
        if on_started:
            on_started()
        await stop.wait()
        ready["draining"] = True
    finally:
        stop.set()
        for runner in runners:
            await runner.cleanup()
        await sweeper
        await engine.close()
