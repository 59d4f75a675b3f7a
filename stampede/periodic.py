"""Housekeeping timers: run a coroutine every interval until told to stop.

A failed round is logged and retried next tick: a Redis hiccup must not end
the sweeper.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("stampede.periodic")


async def every(interval_s: float, job: Callable[[], Awaitable[object]],
                stop: asyncio.Event, name: str) -> None:
    while not stop.is_set():
        try:
            await job()
        except Exception:  # keep the timer alive; the next tick retries
            log.exception("%s failed; retrying next tick", name)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
