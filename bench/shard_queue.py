"""The cost of the waiting room on a sharded campaign, on a local 3-primary Valkey
Cluster, in one run: buyers/s through the engine (no HTTP), with and without a
waiting room, for a campaign of 1 and of 4 shards.

A buyer with a waiting room takes a ticket (the room admits at once: rate and burst
far above the load, so the queue is never the limit and what is measured is its
cost) and claims with the admission token it got; without one, a buyer only claims.
The queue is shard 0's, so every ticket goes to shard 0's node whatever the shard
count; a claim on shard k >= 1 checks the token as a pass in its own script and then
frees the turn's slot on shard 0 (one more round trip). Modes run interleaved round by
round (each round a fresh campaign), so machine drift hits them alike. Every round
checks that each buyer got a unit, the cross-shard audit is clean, and no used turn
is left holding a slot in the queue.

    python -m bench.shard_queue [--seconds 3] [--rounds 3] [--concurrency 256]
                                [--json out.json]
"""

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import uvloop
from rich.console import Console

from bench import harness
from stampede import Engine, Outcome, Settings
from stampede.domain.shards import audit
from stampede.runtime.valkey_cluster import LocalValkeyCluster

console = Console()
ROOM = {"rate_per_s": 1_000_000, "burst": 1_000_000, "max_active": 10_000_000,
        "admission_window_s": 3600, "token_ttl_s": 3600}
MODES = {"1 shard": (1, False), "1 shard, waiting room": (1, True),
         "4 shards": (4, False), "4 shards, waiting room": (4, True)}


async def _round(engine: Engine, cid: str, n: int, room: bool, seconds: float,
                 concurrency: int) -> float:
    extra = {"waiting_room": ROOM} if room else {}
    await engine.define_campaign(cid, harness.open_sale(50_000_000, shards=n, **extra))
    done = 0
    stop_at = time.perf_counter() + seconds

    async def buyer(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            user, token = f"w{w}-{i}", None
            if room:
                outcome, ticket, _ = await engine.take_ticket(cid, user)
                assert outcome is Outcome.OK and ticket is not None, outcome
                assert ticket.status == "admitted", ticket
                token = ticket.admission_token
            result = await engine.claim(cid, user, "hot", 1, admission_token=token)
            assert result.outcome is Outcome.OK, result
            done += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(buyer(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    stats = await engine.stats(cid)
    assert stats is not None and stats.skus[0].held == done, "accounting broken"
    if n > 1:
        report = await audit(engine.redis, cid, n)
        assert report.problems == [], report.problems
    if room:  # every turn was used, so none holds a slot in the queue
        assert stats.waiting_room is not None and stats.waiting_room.active == 0, stats
    return done / elapsed


async def run(seconds: float, rounds: int, concurrency: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-shard-queue-") as tmp:
        cluster = LocalValkeyCluster(Path(tmp) / "cluster", primaries=3, replicas=0)
        cluster.start()
        try:
            engine = Engine.from_url(cluster.url, Settings(
                data_dir=Path(tmp), redis_cluster=True, cluster_wait_replicas=0))
            await engine.start()
            try:
                for r in range(rounds):
                    for j, (mode, (n, room)) in enumerate(MODES.items()):
                        console.log(f"round {r + 1}/{rounds}: {mode}")
                        rate = await _round(engine, f"q-r{r}-m{j}", n, room, seconds,
                                            concurrency)
                        rates.setdefault(mode, []).append(rate)
            finally:
                await engine.close()
        finally:
            cluster.stop()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    rates = uvloop.run(run(args.seconds, args.rounds, args.concurrency))
    medians = harness.print_rounds(
        f"buyers/s (a ticket, then a claim with its token; or a claim alone), "
        f"concurrency {args.concurrency}", ("mode", "median buyers/s", "rounds", "ratio"),
        rates, "1 shard")
    for n in (1, 4):
        plain = medians[f"{n} shard{'s' if n > 1 else ''}"]
        roomed = medians[f"{n} shard{'s' if n > 1 else ''}, waiting room"]
        added_us = (1 / roomed - 1 / plain) * 1e6  # the system's time per buyer, added
        console.print(f"{n} shard(s): with a waiting room {roomed / plain:.2f}x the buyers/s "
                      f"without; {added_us:,.0f} µs of the system's time added per buyer")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
