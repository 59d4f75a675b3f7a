"""Persister throughput into SQLite and PostgreSQL, and its lag at the engine's peak claim rate.

Two measures per store, both on this machine, beside each other:

1. drain: N events already in the stream (made by real claims), one
   persister drains them: persisted events per second.
2. peak: the engine's batched claim burst (as bench.engine_claims: 256
   claimers, one hot SKU) for a few seconds, while `stampede persist` runs
   as its own process; the lag (oldest unacknowledged event age, events not
   acknowledged) is sampled every 250 ms. Kept up means the lag stays
   bounded: it does not grow from the first half of the burst to the second.
3. paced: the same at --service-rate claims/s, the peak that `stampede serve`
   reaches through HTTP on this machine (bench.e2e), which is what the
   persister beside a real service has to follow.

PostgreSQL is a throwaway cluster with fsync on (bench.harness); SQLite is
WAL with synchronous=FULL, as in production.

    python -m bench.bench_persister [--events 60000] [--seconds 6] [--json out.json]
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from bench import harness
from stampede import Engine, Outcome, Settings
from stampede.domain.models import CampaignSpec
from stampede.durable.persister import Persister, lag
from stampede.durable.store import open_store
from stampede.runtime.valkey import EmbeddedValkey

console = Console(width=150)


def _spec(stock: int) -> CampaignSpec:
    now = datetime.now(UTC)
    return msgspec.convert({
        "name": "bench", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(), "limits": {"per_user": 2},
        "skus": [{"sku": "hot", "price": 100,
                  "waves": [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": stock}]}]},
        CampaignSpec)


async def _burst(engine: Engine, cid: str, seconds: float, concurrency: int = 256,
                 rate: float | None = None) -> int:
    """Claims as fast as the batched engine takes them (or at `rate` per second); how many."""
    done = 0
    t0 = time.perf_counter()
    stop_at = t0 + seconds
    tag = time.perf_counter_ns()  # fresh users every burst: the per-user limit holds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            if rate is not None:  # this worker's i-th slot of a fixed timetable
                delay = t0 + (i * concurrency + w) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            r = await engine.claim(cid, f"w{tag}-{w}-{i}", "hot")
            assert r.outcome is Outcome.OK
            done += 1
            i += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done


async def drain_rate(redis_url: str, store_url: str, events: int, tmp: Path) -> float:
    """Events per second one persister commits, from a full stream to an empty store."""
    settings = Settings(data_dir=tmp, store_url=store_url)
    engine = Engine.from_url(redis_url, settings)
    await engine.start()
    await engine.redis.flushall()
    await engine.define_campaign("drain", _spec(50_000_000))
    made = 0
    while made < events:
        made += await _burst(engine, "drain", 1.0)
    total = int((await engine.stats("drain")).events)  # type: ignore[union-attr]
    await engine.close()
    redis: Redis[str] = Redis.from_url(redis_url, decode_responses=True)
    store = await open_store(store_url)
    try:
        persister = Persister(redis, store, settings, consumer="bench")
        started = time.perf_counter()
        await persister.drain(timeout_s=600)
        elapsed = time.perf_counter() - started
        assert persister.persisted == total, (persister.persisted, total)
    finally:
        await store.close()
        await redis.aclose()
    return total / elapsed


async def peak_lag(redis_url: str, store_url: str, seconds: float, tmp: Path,
                   rate: float | None = None) -> dict[str, Any]:
    """Claim burst with `stampede persist` beside it; lag sampled every 250 ms."""
    settings = Settings(data_dir=tmp, store_url=store_url)
    engine = Engine.from_url(redis_url, settings)
    await engine.start()
    await engine.redis.flushall()
    await engine.define_campaign("peak", _spec(50_000_000))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env.update(STAMPEDE_REDIS_URL=redis_url, STAMPEDE_STORE_URL=store_url,
               STAMPEDE_DATA_DIR=str(tmp))
    stampede = str(Path(sys.executable).parent / "stampede")
    with (tmp / "persist.log").open("ab") as log:
        proc = subprocess.Popen([stampede, "persist"], env=env, stdout=log, stderr=log)
    redis: Redis[str] = Redis.from_url(redis_url, decode_responses=True)
    samples: list[tuple[float, float, int]] = []
    try:
        await asyncio.sleep(1.0)  # the persister is up and has its group
        stop = asyncio.Event()

        async def sample() -> None:
            t0 = time.perf_counter()
            while not stop.is_set():
                info = await lag(redis, "peak")
                samples.append((time.perf_counter() - t0, info.oldest_age_s, info.pending))
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        claims = await _burst(engine, "peak", seconds, rate=rate)
        rate = claims / (time.perf_counter() - started)
        stop.set()
        await sampler
        caught_up = time.perf_counter()
        while (await lag(redis, "peak")).pending:
            await asyncio.sleep(0.05)
            if time.perf_counter() - caught_up > 120:
                break
        catch_up_s = time.perf_counter() - caught_up
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        await redis.aclose()
        await engine.close()
    half = len(samples) // 2
    first = [p for _, _, p in samples[:half]] or [0]
    second = [p for _, _, p in samples[half:]] or [0]
    return {"claims_per_s": rate, "max_lag_s": max(a for _, a, _ in samples),
            "max_pending": max(p for _, _, p in samples),
            "pending_first_half_median": statistics.median(first),
            "pending_second_half_median": statistics.median(second),
            "catch_up_s": catch_up_s, "samples": samples}


@contextmanager
def _stores(tmp: Path) -> Iterator[dict[str, str]]:
    stores = {"sqlite": f"sqlite:///{tmp / 'bench.db'}"}
    try:
        with harness.postgres() as pg:
            stores["postgresql"] = pg.dsn
            yield stores
    except FileNotFoundError:
        console.log("no PostgreSQL binaries: SQLite only")
        yield stores


async def run(events: int, seconds: float, service_rate: float) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        server = EmbeddedValkey(tmp)
        url = server.start()
        try:
            with _stores(tmp) as stores:
                for name, store_url in stores.items():
                    sub = tmp / name
                    sub.mkdir()
                    console.log(f"{name}: draining {events:,}+ events")
                    rate = await drain_rate(url, store_url, events, sub)
                    fresh = store_url if name != "sqlite" else f"sqlite:///{sub / 'peak.db'}"
                    console.log(f"{name}: claim burst of {seconds}s with a persister beside it")
                    results[name] = {"drain_events_per_s": rate,
                                     **await peak_lag(url, fresh, seconds, sub)}
                    console.log(f"{name}: {service_rate:,.0f} claims/s for {seconds}s "
                                "(the HTTP service's peak) with a persister beside it")
                    fresh = store_url if name != "sqlite" else f"sqlite:///{sub / 'paced.db'}"
                    results[f"{name} @ service peak"] = {
                        "drain_events_per_s": rate,
                        **await peak_lag(url, fresh, seconds, sub, rate=service_rate)}
        finally:
            server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--service-rate", type=float, default=10_000,
                        help="claims/s of the paced burst: the HTTP service's peak (bench.e2e)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results = uvloop.run(run(args.events, args.seconds, args.service_rate))
    table = Table(title="persister: events into the store, lag at the engine's peak claim rate "
                        "and at the HTTP service's")
    for col in ("store", "drain events/s", "claims/s (persister beside)", "max lag s",
                "max unacked", "unacked median 1st/2nd half", "catch-up s"):
        table.add_column(col)
    for name, r in results.items():
        table.add_row(name, f"{r['drain_events_per_s']:,.0f}", f"{r['claims_per_s']:,.0f}",
                      f"{r['max_lag_s']:.2f}", f"{r['max_pending']:,}",
                      f"{r['pending_first_half_median']:,.0f} / "
                      f"{r['pending_second_half_median']:,.0f}", f"{r['catch_up_s']:.2f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
