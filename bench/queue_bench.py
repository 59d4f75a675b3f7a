"""Waiting-room and waitlist throughput through the engine (no HTTP), and Redis memory per user.

At the opening the queue endpoints take the heaviest traffic: everyone
takes a ticket, then polls it. Measured here, each beside a baseline of
the same concurrency on the same server: a bare PING round trip per call
(the ceiling any one-script-per-request operation can reach).

- joins/s: `take_ticket` for fresh users (after the opening: FIFO tickets)
- polls/s: `ticket` for random users holding tickets (advances the serving
  counter, signs a token when admitted)
- waitlist joins/s: `join_waitlist` on a sold-out SKU
- memory per waiting user: MEMORY USAGE of the queue zset (and of the
  waitlist zset + entries hash) over N users, and the used_memory delta

    python -m bench.queue_bench [--users 20000] [--seconds 3] [--concurrency 256]
"""

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from rich.console import Console
from rich.table import Table

from bench import harness
from stampede import Engine, Outcome
from stampede.domain.models import CampaignSpec
from stampede.state import keys

console = Console()


def _spec(stock: int, **extra: Any) -> CampaignSpec:
    now = datetime.now(UTC)
    return msgspec.convert({
        "name": "bench", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(), "limits": {"per_user": 2},
        "skus": [{"sku": "hot", "price": 100,
                  "waves": [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": stock}]}],
        **extra}, CampaignSpec)


async def _timed(n: int, concurrency: int, op: Callable[[int], Awaitable[None]]) -> float:
    """Run op(0..n-1) with `concurrency` workers; calls per second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def _for(seconds: float, concurrency: int, op: Callable[[], Awaitable[None]]) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await op()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def _used_memory(engine: Engine) -> int:
    return int((await engine.redis.info("memory"))["used_memory"])


async def run(users: int, seconds: float, concurrency: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with harness.fresh_engine() as engine:

        async def ping(_: Any = None) -> None:
            await engine.redis.ping()

        out["baseline PING/s"] = await _for(seconds, concurrency, ping)

        # Waiting room: slow admission, so nearly everyone waits.
        room = {"rate_per_s": 50, "max_active": 1000}
        await engine.define_campaign("room", _spec(1000, waiting_room=room))
        before = await _used_memory(engine)

        async def join(i: int) -> None:
            outcome, _, created = await engine.take_ticket("room", f"user-{i:08d}")
            assert outcome is Outcome.OK and created

        console.log(f"{users:,} joins")
        out["queue joins/s"] = await _timed(users, concurrency, join)
        ks = keys.campaign_keys("room")
        out["queue bytes/user (MEMORY USAGE)"] = \
            await engine.redis.memory_usage(ks.queue, samples=0) / users
        out["queue bytes/user (used_memory delta)"] = \
            (await _used_memory(engine) - before) / users

        async def poll() -> None:
            outcome, ticket = await engine.ticket("room", f"user-{random.randrange(users):08d}")
            assert outcome is Outcome.OK and ticket

        console.log("polls")
        out["queue polls/s"] = await _for(seconds, concurrency, poll)

        # Waitlist: one unit, held; everyone else joins its waitlist.
        await engine.define_campaign("wl", _spec(1, waitlist={"max_length": 10_000_000}))
        assert (await engine.claim("wl", "holder", "hot")).outcome is Outcome.OK
        before = await _used_memory(engine)

        async def wl_join(i: int) -> None:
            outcome, _, _ = await engine.join_waitlist("wl", f"user-{i:08d}", "hot")
            assert outcome is Outcome.OK

        console.log(f"{users:,} waitlist joins")
        out["waitlist joins/s"] = await _timed(users, concurrency, wl_join)
        ks = keys.campaign_keys("wl")
        wl_bytes = sum([await engine.redis.memory_usage(k, samples=0)
                        for k in (ks.waitlist, ks.wlentries)])
        out["waitlist bytes/user (MEMORY USAGE)"] = wl_bytes / users
        out["waitlist bytes/user (used_memory delta)"] = \
            (await _used_memory(engine) - before) / users

        async def wl_poll() -> None:
            user = f"user-{random.randrange(users):08d}"
            outcome, _ = await engine.waitlist("wl", user, "hot")
            assert outcome is Outcome.OK

        console.log("waitlist polls")
        out["waitlist polls/s"] = await _for(seconds, concurrency, wl_poll)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    figures = uvloop.run(run(args.users, args.seconds, args.concurrency))
    table = Table(title=f"queue endpoints through the engine, {args.users:,} users, "
                        f"concurrency {args.concurrency}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    base = figures["baseline PING/s"]
    for name, value in figures.items():
        ratio = f"  ({value / base:.2f}x PING)" if name.endswith("/s") and "PING" not in name \
            else ""
        table.add_row(name, f"{value:,.1f}{ratio}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
