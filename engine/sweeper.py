"""The hold sweeper: a timer that releases due waves and expires lapsed holds.

Claims sweep opportunistically too; this timer makes sure stock comes back
even when nobody is claiming. A failed round is logged and retried next tick.
"""

import asyncio
import logging

from engine.service import Engine

log = logging.getLogger("stampede.sweeper")


async def run_sweeper(engine: Engine, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await engine.sweep_all()
        except Exception:  # Redis hiccup: keep the timer alive
            log.exception("sweep failed; retrying next tick")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            pass
