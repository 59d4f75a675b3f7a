"""The persister's CPU per event into SQLite and PostgreSQL, and its lag, before and after.

Each measure runs twice per store, interleaved on the same machine in one run:
the persister of this checkout ("after") and that of an older commit ("before",
`--before`, by default the last commit before the persister's rewrite; checked
out into a temporary git worktree and run with PYTHONPATH pointing at it).

1. drain: N events already in the stream (made by real claims, restored from
   one DUMP before each drain); one persister (bench/persister_drain.py, its
   own process) drains them into an empty store: events/s, and its process
   CPU per event, the median of --rounds drains per code, interleaved. For
   PostgreSQL the server's CPU per event (every backend) is shown beside it.
2. paced: claims at --service-rate per second (about what `stampede serve`
   takes through HTTP on this machine, bench.e2e) with `stampede persist`
   beside them, its own process: its CPU per event from start to caught up,
   and its lag (oldest unacknowledged event age, events not acknowledged)
   sampled every 250 ms.
3. peak: the engine's batched claim burst (256 claimers, one hot SKU, no
   HTTP) with `stampede persist` beside it. Kept up means the lag stays
   bounded: the backlog does not grow from the first half of the burst to
   the second.

PostgreSQL is a throwaway cluster with fsync on (bench.harness), a fresh
database per measure; SQLite is WAL with synchronous=FULL, as in production.

    python -m bench.bench_persister [--events 20000] [--rounds 3] [--seconds 3]
        [--service-rate 8000] [--before REV|PATH] [--json out.json]
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import msgspec
import uvloop
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from bench import harness
from stampede import Engine, Outcome, Settings
from stampede.domain.models import CampaignSpec
from stampede.durable.persister import GROUP, lag
from stampede.runtime.postgres import PgCluster, postgres
from stampede.runtime.valkey import EmbeddedValkey
from stampede.state.keys import events_key

console = Console(width=160)
REPO = Path(__file__).resolve().parent.parent
BEFORE = "10eec66"
"""main just before the persister's rewrite (raw reads, tuples, driver SQL, linger)."""


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


async def _events(engine: Engine, cid: str) -> int:
    return int((await engine.stats(cid)).events)  # type: ignore[union-attr]


def _env(code: Path, redis_url: str, store_url: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env.update(PYTHONPATH=str(code), STAMPEDE_REDIS_URL=redis_url,
               STAMPEDE_STORE_URL=store_url, STAMPEDE_DATA_DIR=str(tmp))
    return env


class Stores:
    """A fresh store per measure: a new SQLite file, or a new PostgreSQL database."""

    def __init__(self, tmp: Path, pg: PgCluster | None) -> None:
        self.tmp, self.pg, self.n = tmp, pg, 0

    async def fresh(self, kind: str) -> str:
        self.n += 1
        if kind == "sqlite":
            return f"sqlite:///{self.tmp / f'store{self.n}.db'}"
        assert self.pg is not None
        conn = await asyncpg.connect(self.pg.dsn)
        try:
            await conn.execute(f"CREATE DATABASE bench{self.n}")
        finally:
            await conn.close()
        return self.pg.dsn.rsplit("/", 1)[0] + f"/bench{self.n}"

    def server_cpu(self, kind: str) -> float:
        """PostgreSQL's CPU so far (every backend); 0 for SQLite (it is in the persister)."""
        if kind == "sqlite" or self.pg is None or self.pg.pid is None:
            return 0.0
        # The live backends, and those gone already (their CPU went to the postmaster's
        # children times when it reaped them).
        fields = Path(f"/proc/{self.pg.pid}/stat").read_text().rsplit(")", 1)[1].split()
        reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        return harness.tree_cpu_seconds([self.pg.pid]) + reaped


async def fill(redis_url: str, events: int, tmp: Path) -> tuple[bytes, int]:
    """A stream of at least `events` claims; its DUMP (every drain starts from a copy)."""
    engine = Engine.from_url(redis_url, Settings(data_dir=tmp))
    await engine.start()
    await engine.redis.flushall()
    await engine.define_campaign("drain", _spec(50_000_000))
    made = 0
    while made < events:
        made += await _burst(engine, "drain", 1.0)
    total = await _events(engine, "drain")
    await engine.close()
    redis = Redis.from_url(redis_url)  # bytes: a DUMP is not text
    try:
        dump = await redis.dump(events_key("drain"))
    finally:
        await redis.aclose()
    assert isinstance(dump, bytes)
    return dump, total


async def drain(redis_url: str, stores: Stores, kind: str, code: Path, stream: tuple[bytes, int],
                tmp: Path) -> dict[str, Any]:
    """The full stream drained by one persister of `code`: events/s and CPU per event."""
    dump, total = stream
    redis = Redis.from_url(redis_url)
    try:  # the stream as filled, without the last drain's group (nor its trim)
        await redis.restore(events_key("drain"), 0, dump, replace=True)
    finally:
        await redis.aclose()
    store_url = await stores.fresh(kind)
    server = stores.server_cpu(kind)
    out = subprocess.run([sys.executable, str(REPO / "bench" / "persister_drain.py"),
                          redis_url, store_url, str(tmp)],
                         env=_env(code, redis_url, store_url, tmp), check=True,
                         capture_output=True, text=True)
    server = stores.server_cpu(kind) - server
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["events"] == total, (r, total)
    assert Path(r["code"]).resolve() == code.resolve(), (r["code"], code)
    return {"events": total, "drain_events_per_s": total / r["wall_s"],
            "drain_cpu_us": r["cpu_s"] / total * 1e6,
            "drain_server_cpu_us": server / total * 1e6}


async def _group_ready(redis: "Redis", key: str, timeout_s: float = 60) -> None:
    """Until the persister has opened its store (migrations) and made its group."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        with contextlib.suppress(Exception):
            if any(g["name"] == GROUP for g in await redis.xinfo_groups(key)):
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("the persister did not start")


async def beside(redis_url: str, stores: Stores, kind: str, code: Path, seconds: float,
                 tmp: Path, rate: float | None = None) -> dict[str, Any]:
    """A claim burst (at `rate`, else the engine's peak) with `stampede persist` of
    `code` beside it: the lag, sampled every 250 ms, and the persister's CPU per event."""
    engine = Engine.from_url(redis_url, Settings(data_dir=tmp))
    await engine.start()
    await engine.redis.flushall()
    await engine.define_campaign("peak", _spec(50_000_000))
    store_url = await stores.fresh(kind)
    stampede = str(Path(sys.executable).parent / "stampede")
    with (tmp / "persist.log").open("ab") as log:
        proc = subprocess.Popen([stampede, "persist"], env=_env(code, redis_url, store_url, tmp),
                                stdout=log, stderr=log)
    redis: Redis = Redis.from_url(redis_url, decode_responses=True)
    samples: list[tuple[float, float, int]] = []
    try:
        await _group_ready(redis, events_key("peak"))
        await asyncio.sleep(0.5)  # its first (empty) rounds are behind it
        first = await _events(engine, "peak")
        cpu, server = harness.tree_cpu_seconds([proc.pid]), stores.server_cpu(kind)
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
        claim_rate = claims / (time.perf_counter() - started)
        stop.set()
        await sampler
        caught_up = time.perf_counter()
        while (await lag(redis, "peak")).pending:
            await asyncio.sleep(0.05)
            if time.perf_counter() - caught_up > 120:
                break
        catch_up_s = time.perf_counter() - caught_up
        n = await _events(engine, "peak") - first
        cpu = harness.tree_cpu_seconds([proc.pid]) - cpu
        server = stores.server_cpu(kind) - server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        await redis.aclose()
        await engine.close()
    half = len(samples) // 2
    first_half = [p for _, _, p in samples[:half]] or [0]
    second_half = [p for _, _, p in samples[half:]] or [0]
    return {"claims_per_s": claim_rate, "cpu_us": cpu / n * 1e6,
            "server_cpu_us": server / n * 1e6, "max_lag_s": max(a for _, a, _ in samples),
            "max_pending": max(p for _, _, p in samples),
            "pending_first_half_median": statistics.median(first_half),
            "pending_second_half_median": statistics.median(second_half),
            "catch_up_s": catch_up_s, "samples": samples}


@contextlib.contextmanager
def before_tree(rev: str, tmp: Path) -> Iterator[Path | None]:
    """The code to compare against: a directory, or a git revision checked out for the run."""
    if Path(rev).is_dir():
        yield Path(rev)
        return
    where = tmp / "before"
    made = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), rev],
                          capture_output=True, text=True)
    if made.returncode:
        console.log(f"no 'before' code ({made.stderr.strip()}): this checkout only")
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)],
                       capture_output=True)


@contextlib.contextmanager
def postgres_or_none() -> Iterator[PgCluster | None]:
    try:
        with postgres() as pg:
            yield pg
    except FileNotFoundError:
        console.log("no PostgreSQL binaries: SQLite only")
        yield None


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    server = EmbeddedValkey(tmp)
    url = server.start()
    try:
        with before_tree(args.before, tmp) as old, postgres_or_none() as pg:
            stores = Stores(tmp, pg)
            codes = {"after": REPO} | ({"before": old} if old else {})
            kinds = ["sqlite"] + (["postgresql"] if pg else [])
            for kind in kinds:
                console.log(f"{kind}: filling a stream with {args.events:,}+ claims")
                stream = await fill(url, args.events, tmp)
                drains: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
                for i in range(args.rounds):
                    for name, code in codes.items():  # interleaved: same conditions
                        console.log(f"{kind}, {name}: drain {i + 1}/{args.rounds}")
                        sub = tmp / f"{kind}-drain-{name}-{i}"
                        sub.mkdir()
                        drains[name].append(await drain(url, stores, kind, code, stream, sub))
                for name, runs in drains.items():  # the median round by CPU per event
                    runs.sort(key=lambda d: d["drain_cpu_us"])
                    results[f"{kind} {name}"] = {"store": kind, "code": name,
                                                 **runs[len(runs) // 2],
                                                 "drain_cpu_us_rounds": [
                                                     d["drain_cpu_us"] for d in runs]}
                for measure in ("paced", "peak"):
                    for name, code in codes.items():
                        sub = tmp / f"{kind}-{measure}-{name}"
                        sub.mkdir()
                        console.log(f"{kind}, {name}: {measure}")
                        results[f"{kind} {name}"][measure] = await beside(
                            url, stores, kind, code, args.seconds, sub,
                            rate=args.service_rate if measure == "paced" else None)
    finally:
        server.stop()
    return results


def _ratio(results: dict[str, dict[str, Any]], kind: str, get: Any) -> str:
    before, after = results.get(f"{kind} before"), results.get(f"{kind} after")
    if not before or not after or not get(after):
        return ""
    return f"{get(before) / get(after):.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="drains per code (median shown)")
    parser.add_argument("--service-rate", type=float, default=8_000,
                        help="claims/s of the paced burst: the HTTP service's peak (bench.e2e)")
    parser.add_argument("--before", default=BEFORE,
                        help="the code to compare with: a git revision or a directory")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = uvloop.run(run(args, Path(tmp)))
    table = Table(title="persister: CPU per event (its own process; PostgreSQL's server "
                        "beside it) and lag")
    for col in ("store", "code", "drain ev/s", "drain µs/ev", "PG server µs/ev",
                "paced claims/s", "paced µs/ev", "paced max lag s", "peak claims/s",
                "peak µs/ev", "peak max lag s", "peak unacked 1st/2nd half", "catch-up s"):
        table.add_column(col)
    for r in results.values():
        paced, peak = r["paced"], r["peak"]
        table.add_row(r["store"], r["code"], f"{r['drain_events_per_s']:,.0f}",
                      f"{r['drain_cpu_us']:.1f}",
                      f"{r['drain_server_cpu_us']:.1f}" if r["store"] != "sqlite" else "",
                      f"{paced['claims_per_s']:,.0f}", f"{paced['cpu_us']:.1f}",
                      f"{paced['max_lag_s']:.2f}", f"{peak['claims_per_s']:,.0f}",
                      f"{peak['cpu_us']:.1f}", f"{peak['max_lag_s']:.2f}",
                      f"{peak['pending_first_half_median']:,.0f} / "
                      f"{peak['pending_second_half_median']:,.0f}", f"{peak['catch_up_s']:.2f}")
    console.print(table)
    for kind in ("sqlite", "postgresql"):
        ratios = [(what, _ratio(results, kind, get)) for what, get in (
            ("drain CPU/event", lambda r: r["drain_cpu_us"]),
            ("paced CPU/event", lambda r: r["paced"]["cpu_us"]),
            ("peak CPU/event", lambda r: r["peak"]["cpu_us"]))]
        if all(v for _, v in ratios):
            console.print(f"{kind}: before/after " + ", ".join(f"{w} {v}" for w, v in ratios))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
