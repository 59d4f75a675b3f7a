"""Supervision of `serve`'s children: the persister and the embedded Valkey.

A child that dies is reaped at once (no zombie), logged, counted in
`stampede_restarts_total{component}` and started again after a backoff that
doubles with each crash (STAMPEDE_RESTART_BACKOFF_MS up to 30 s). More than
STAMPEDE_RESTART_LIMIT crashes within STAMPEDE_RESTART_WINDOW_S is a crash
loop: the persister is then left down (claims are safe in Redis; /readyz
details, metrics and `stampede check` show it), while a crash-looping Valkey
stops the service with a non-zero exit, for whatever runs it to take over.

When the embedded Valkey dies, readiness fails at once and stays off until
Valkey is back from its AOF and every campaign whose Redis state is older
than the store (the last second of writes under appendfsync everysec) has
been healed: nothing sells from state older than what was persisted. The
restarted Valkey is closed to every other client (requests answer 503) until
that healing is done: a claim taken from the older state would be undone by
the rebuild after it had been answered 201, and a confirm of a hold the store
has but the AOF lost would answer a final 404.
"""

import asyncio
import subprocess
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from redis.asyncio import Redis

from stampede.logs import log
from stampede.metrics import CRASH_LOOPS, RESTARTS
from stampede.periodic import every
from stampede.runtime import lifecycle
from stampede.runtime.health import PersisterHealth
from stampede.runtime.persistence import heal_now
from stampede.runtime.valkey import EmbeddedValkey
from stampede.settings import Settings

POLL_S = 0.2
MAX_BACKOFF_S = 30.0
HEALTH_INTERVAL_S = 2.0


@dataclass
class RestartPolicy:
    backoff_s: float = 0.5
    """Wait before the first restart; doubled for each crash in the window."""
    limit: int = 5
    """Crashes within `window_s` after which a child counts as crash-looping."""
    window_s: float = 60.0


@dataclass
class Component:
    """One supervised child and its crash history."""
    name: str
    policy: RestartPolicy
    crashes: deque[float] = field(default_factory=deque)
    restarts: int = 0
    state: str = "running"
    """running, restarting, or crash_loop (left down)."""

    def crashed(self, now: float) -> float | None:
        """Record a crash; the delay before the restart, or None in a crash loop."""
        self.crashes.append(now)
        while self.crashes and self.crashes[0] < now - self.policy.window_s:
            self.crashes.popleft()
        if len(self.crashes) > self.policy.limit:
            self.state = "crash_loop"
            CRASH_LOOPS.labels(self.name).inc()
            return None
        self.state = "restarting"
        return min(self.policy.backoff_s * float(2 ** (len(self.crashes) - 1)), MAX_BACKOFF_S)


class Child(Protocol):
    """A child process that can be started again (lifecycle.PersisterChild)."""
    proc: "subprocess.Popen[bytes] | None"

    def start(self) -> None: ...


class Supervisor:
    """Watches the children `serve` starts and brings back any that dies."""

    def __init__(self, stop: asyncio.Event, ready: dict[str, bool],
                 policy: RestartPolicy | None = None) -> None:
        self.stop = stop
        self.ready = ready
        self.policy = policy or RestartPolicy()
        self.failed = False
        """A child the service cannot run without is crash-looping: exit non-zero."""
        self.components: dict[str, Component] = {}
        self._children: dict[str, Child] = {}
        self._valkey: EmbeddedValkey | None = None
        self._heal: Callable[[Redis], Awaitable[object]] | None = None

    # -- what to watch -------------------------------------------------------

    def add_child(self, name: str, child: Child) -> None:
        """Watch a started child; its owner (a lifecycle context) still stops it."""
        self._children[name] = child
        self.components[name] = Component(name, self.policy)

    def add_valkey(self, valkey: EmbeddedValkey,
                   heal: Callable[[Redis], Awaitable[object]]) -> None:
        """`heal(client)` runs after each restart, through a client of its own, while the
        restarted Valkey is still closed to everyone else."""
        self._valkey, self._heal = valkey, heal
        self.components["valkey"] = Component("valkey", self.policy)

    def status(self) -> dict[str, dict[str, object]]:
        return {name: {"state": c.state, "restarts": c.restarts}
                for name, c in self.components.items()}

    def running(self, name: str) -> bool:
        c = self.components.get(name)
        return c is not None and c.state == "running"

    # -- the loop -------------------------------------------------------------

    async def run(self) -> None:
        while not self.stop.is_set():
            for name, child in list(self._children.items()):
                proc = child.proc
                if self.components[name].state == "running" and proc is not None \
                        and proc.poll() is not None:  # (poll reaps it: no zombie)
                    await self._restart_process(name, child, proc.returncode)
            if self._valkey is not None and self.components["valkey"].state == "running" \
                    and self._valkey.exited() is not None:
                await self._restart_valkey(self._valkey)
            try:
                await asyncio.wait_for(self.stop.wait(), POLL_S)
            except TimeoutError:
                pass

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless the service stops first; True if it did."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
            return True
        except TimeoutError:
            return False

    async def _restart_process(self, name: str, child: Child, code: int | None) -> None:
        component = self.components[name]
        delay = component.crashed(time.monotonic())
        if delay is None:
            log.error("child keeps dying; leaving it down", component=name, code=code,
                      crashes=len(component.crashes), window_s=self.policy.window_s)
            return
        log.warning("child died; restarting", component=name, code=code, delay_s=delay)
        if await self._pause(delay):
            return
        child.start()
        component.restarts += 1
        component.state = "running"
        RESTARTS.labels(name).inc()
        log.info("child restarted", component=name, restarts=component.restarts)

    async def _restart_valkey(self, valkey: EmbeddedValkey) -> None:
        component = self.components["valkey"]
        self.ready["healing"] = True  # readiness fails until the state is healed
        code = valkey.exited()
        while not self.stop.is_set():
            delay = component.crashed(time.monotonic())
            if delay is None:
                log.error("embedded Valkey keeps dying; stopping the service", code=code)
                self.failed = True
                self.stop.set()
                return
            log.warning("embedded Valkey died; restarting it from its AOF", code=code,
                        delay_s=delay)
            if await self._pause(delay):
                return
            try:
                await asyncio.to_thread(valkey.restart, closed=True)
                break
            except Exception as exc:  # noqa: BLE001 - it would not start: count it as another crash
                log.error("embedded Valkey did not start", error=repr(exc))
                code = valkey.exited()
        else:
            return
        component.restarts += 1
        component.state = "running"
        RESTARTS.labels("valkey").inc()
        if not await self._heal_until_done(valkey):
            return  # stopping, or it died again: the loop restarts it (still closed)
        try:
            await asyncio.to_thread(valkey.open)
        except Exception as exc:  # noqa: BLE001 - it died meanwhile: the loop restarts it
            log.error("embedded Valkey could not be opened after healing", error=repr(exc))
            return
        self.ready["healing"] = False
        log.info("embedded Valkey restarted and campaigns healed", restarts=component.restarts)

    async def _heal_until_done(self, valkey: EmbeddedValkey) -> bool:
        """Heal through the only client the closed Valkey lets in; False if the service
        stops or Valkey dies first."""
        assert self._heal is not None
        delay = 0.1
        client = Redis.from_url(valkey.url, password=valkey.password, decode_responses=True)
        try:
            while not self.stop.is_set() and valkey.exited() is None:
                try:
                    await self._heal(client)
                    return True
                except Exception as exc:  # noqa: BLE001 - Valkey still loading, or the store away: retry
                    log.warning("healing after the Valkey restart failed; retrying",
                                error=repr(exc), delay_s=delay)
                    if await self._pause(delay):
                        return False
                    delay = min(delay * 2, 5.0)
            return False
        finally:
            await client.aclose()


def watch(process: web.Application, settings: Settings, stop: asyncio.Event,
          ready: dict[str, bool], valkey: EmbeddedValkey | None
          ) -> tuple[Supervisor, PersisterHealth | None, list["asyncio.Task[None]"]]:
    """`serve`'s hook: supervise what the process's lifecycle contexts started (the
    persister child; the embedded Valkey cli started) and watch the persister's health.
    Only the housekeeping worker has them; the tasks end when `stop` is set."""
    supervisor = Supervisor(stop, ready, RestartPolicy(settings.restart_backoff_ms / 1000,
                                                       settings.restart_limit,
                                                       settings.restart_window_s))
    redis = process.get(lifecycle.DURABLE_REDIS)
    if redis is None:
        return supervisor, None, []
    store = process[lifecycle.STORE]
    child = process.get(lifecycle.PERSISTER)
    if child is not None:
        supervisor.add_child("persister", child)
    deliverer = process.get(lifecycle.DELIVERER)
    if deliverer is not None:  # webhooks wait in the store while it is down
        supervisor.add_child("deliverer", deliverer)
    if valkey is not None:
        supervisor.add_valkey(valkey, lambda client: heal_now(client, store, settings))
    health = PersisterHealth(redis, settings.persist_stall_s, supervisor.status)
    tasks = [asyncio.create_task(supervisor.run()),
             asyncio.create_task(every(HEALTH_INTERVAL_S, health.refresh, stop,
                                       "persister-health"))]
    return supervisor, health, tasks
