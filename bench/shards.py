"""One hot campaign on a Valkey Cluster, split over 1, 2 and 4 shards, beside the
single-node engine, in one run: claims/s, and the CPU each process spends per claim.

Topologies, all started here and stopped by pid:
  single node   one embedded Valkey, the campaign unsharded (today's deployment)
  cluster       three primaries (`--replicas` each, default 0), the campaign with
                `shards: 1`, `2` and `4` (shard k's slot k/n round the slot space
                from shard 0's: keys.shard_id), each a fresh campaign per round
Each topology has its persister, a `stampede persist` child on a SQLite store.

The gateway is this process: the engine (batcher, scripts, routing) and the load
generator (`--concurrency` coroutines claiming as fast as answers come) share it,
so "gateway CPU/claim" includes the load generator's share (an upper bound on a
gateway's). Modes run interleaved round by round so machine drift hits them
alike; CPU is read from /proc (bench/harness.py) before and after each round:
the gateway (getrusage of this process), each Valkey primary, and the persister
(over the round and its catch-up, divided by the claims it stored).

Then a sell-out per shard count: `--sellout` units, 2.25 times as many claims
at once, eight ninths of them from users served by shard 0 (which holds 1/n of the
stock, so it must borrow the others' leftovers): exactly the stock must sell; the
figures are the moves between shards and the false sold-out window (the latest a
claim sent after the first SOLD_OUT answer still got a unit; nothing is released
during it, so any such claim means that SOLD_OUT came while units remained
elsewhere).

Then the proactive rebalancer, off and on in turn (`--skew-rounds` each), over the
cluster with 4 shards: a sustained skewed sale of `--skew-stock` units, `concurrency`
claimants each claiming one unit after another until told sold out, three quarters
of the claims from users served by shard 0 (which holds a quarter of the stock), a
sweeper running beside as `serve` runs it (every 250 ms). The figures: claims/s
until sold out, the claims that took the slow dry path (their shard dry: a borrow,
then the claim sent again), the moves each way, and the false sold-out window.
`--skew-only` runs just this (under a minute).

`--coupons` runs the rounds and the sell-outs with a coupon drop in place of the
sale (each claim final at once, issuing a coupon; the drop split the same way),
and no skewed sale: coupon claims/s over 1, 2 and 4 shards beside the single
node, and the false "gone" window of a skewed coupon sell-out.

    python -m bench.shards [--seconds 2] [--rounds 2] [--concurrency 256]
                           [--sellout 2000] [--replicas 0] [--json out.json]
                           [--skew-stock 20000] [--skew-rounds 2] [--skew-only]
                           [--coupons]
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from rich.console import Console
from rich.table import Table

from bench import harness
from stampede import Engine, Outcome, Settings
from stampede.domain.shards import audit, shard_of_user
from stampede.runtime.valkey import EmbeddedValkey
from stampede.runtime.valkey_cluster import LocalValkeyCluster
from stampede.state import keys

console = Console()
SINGLE = "single node"
MODES = {SINGLE: 1, "cluster, 1 shard": 1, "cluster, 2 shards": 2, "cluster, 4 shards": 4}


@dataclass
class Topology:
    name: str
    url: str
    cluster: bool
    valkeys: dict[str, int]
    """Valkey primaries by name -> pid."""
    data_dir: Path
    persister: subprocess.Popen[bytes] | None = None
    engine: Engine | None = None
    replicas: int = 0
    """Replicas per primary: writes wait for one (STAMPEDE_CLUSTER_WAIT_REPLICAS) if any."""

    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, redis_cluster=self.cluster,
                        cluster_wait_replicas=min(self.replicas, 1))


@dataclass
class Sample:
    claims: int
    seconds: float
    gateway_s: float
    valkey_s: dict[str, float]
    persister_s: float
    persisted_s: float
    """How long after the round the persister took to catch up."""


@dataclass
class Results:
    rates: dict[str, list[float]] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    sellouts: dict[str, dict[str, float]] = field(default_factory=dict)
    skewed: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """Rebalancer off / on: one sustained skewed sale per round."""


REBALANCE = {"rebalancer off": False, "rebalancer on": True}
SKEW_SHARDS = 4
HOT_SHARE = 0.75


def _gateway_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _start_persister(top: Topology) -> None:
    env = {**os.environ, "STAMPEDE_REDIS_URL": top.url,
           "STAMPEDE_REDIS_CLUSTER": "1" if top.cluster else "0",
           "STAMPEDE_DATA_DIR": str(top.data_dir),
           "STAMPEDE_CLUSTER_WAIT_REPLICAS": str(min(top.replicas, 1))}
    top.data_dir.mkdir(parents=True, exist_ok=True)
    with (top.data_dir / "persister.log").open("wb") as log:
        top.persister = subprocess.Popen([sys.executable, "-m", "stampede.runtime.cli",
                                          "persist"], env=env, stdout=log, stderr=log)


@contextlib.contextmanager
def _topologies(replicas: int) -> Iterator[list[Topology]]:
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        single = EmbeddedValkey(Path(tmp) / "single")
        cluster = LocalValkeyCluster(Path(tmp) / "cluster", primaries=3, replicas=replicas)
        tops: list[Topology] = []
        try:
            url = single.start()
            assert single.process is not None
            tops.append(Topology(SINGLE, url, False, {"valkey": single.process.pid},
                                 Path(tmp) / "single"))
            cluster.start()
            primaries = {f"primary {i + 1}": n.process.pid
                         for i, n in enumerate(cluster.primary_nodes()) if n.process}
            tops.append(Topology("cluster", cluster.url, True, primaries,
                                 Path(tmp) / "cluster", replicas=replicas))
            for top in tops:
                _start_persister(top)
            yield tops
        finally:
            for top in tops:
                if top.persister is not None:
                    if top.persister.poll() is not None:  # it should run to the end
                        log = (top.data_dir / "persister.log").read_text()[-2000:]
                        console.print(f"[red]{top.name} persister exited:[/] {log}")
                    top.persister.kill()
                    top.persister.wait()
            cluster.stop()
            single.stop()


async def _caught_up(top: Topology, cids: list[str], events: int,
                     timeout_s: float = 60.0) -> float:
    """Seconds until the persister has stored `events` events of these key sets (its
    SQLite store, read directly), NaN if it did not within the timeout."""
    started = time.perf_counter()
    query = f"SELECT count(*) FROM events WHERE campaign_id IN ({','.join('?' * len(cids))})"
    while time.perf_counter() - started < timeout_s:
        with contextlib.suppress(sqlite3.Error), \
                contextlib.closing(sqlite3.connect(top.data_dir / "stampede.db")) as db:
            if db.execute(query, cids).fetchone()[0] >= events:
                return time.perf_counter() - started
        await asyncio.sleep(0.1)
    return float("nan")


DROP = {"templates": {"hot": {"kind": "fixed_off", "face_value": 500, "valid_days": 30}}}
"""The coupon drop of `--coupons`: one template, one coupon a unit."""


def _spec(stock: int, n: int, coupons: bool, per_user: int | None = 2) -> Any:
    extra: dict[str, Any] = {"coupons": DROP} if coupons else {}
    return harness.open_sale(stock, per_user=per_user, shards=n, **extra)


async def _claim(engine: Engine, cid: str, user: str, coupons: bool) -> Outcome:
    if coupons:
        return (await engine.coupons.claim(cid, user, "hot", 1)).outcome
    return (await engine.claim(cid, user, "hot", 1)).outcome


async def _round(top: Topology, cid: str, n: int, seconds: float, concurrency: int,
                 coupons: bool = False) -> Sample:
    engine = top.engine
    assert engine is not None
    await engine.define_campaign(cid, _spec(50_000_000, n, coupons))
    ids = [keys.shard_id(cid, k, n) for k in range(n)]
    await asyncio.sleep(1.2)  # the persister follows the index each second
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            result = await _claim(engine, cid, f"w{w}-{i}", coupons)
            assert result is Outcome.OK, result
            done += 1
            i += 1

    assert top.persister is not None
    pids = [top.persister.pid]
    cpu0 = (_gateway_cpu(), {k: harness.tree_cpu_seconds([p]) for k, p in top.valkeys.items()},
            harness.tree_cpu_seconds(pids))
    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    gateway = _gateway_cpu() - cpu0[0]
    valkey = {k: harness.tree_cpu_seconds([p]) - cpu0[1][k] for k, p in top.valkeys.items()}
    stats = await engine.stats(cid)
    assert stats is not None and stats.skus[0].held + stats.skus[0].sold == done, \
        "accounting broken"
    if coupons:
        drop = await engine.coupons.stats(cid)
        assert drop is not None and drop.totals.issued == done, "coupon accounting broken"
    catch_up = await _caught_up(top, ids, stats.events)
    persister = harness.tree_cpu_seconds(pids) - cpu0[2]
    return Sample(done, elapsed, gateway, valkey, persister, catch_up)


async def _sellout(top: Topology, cid: str, n: int, stock: int,
                   coupons: bool = False) -> dict[str, float]:
    engine = top.engine
    assert engine is not None
    await engine.define_campaign(cid, _spec(stock, n, coupons, per_user=None))
    moves0 = engine.shards.moves
    t0 = time.perf_counter()

    # Skewed demand: eight ninths of the claimants are served by shard 0, which holds
    # 1/n of the stock; the others' users want less than their shards hold, so shard 0
    # must borrow their leftovers for the sale to sell out.
    hot = (u for i in range(10**9) if shard_of_user(u := f"u{i}", n) == 0)
    cold = (u for i in range(10**9) if n == 1 or shard_of_user(u := f"v{i}", n) != 0)
    users = [next(hot) for _ in range(2 * stock)] + [next(cold) for _ in range(stock // 4)]
    random.Random(7).shuffle(users)

    async def one(user: str) -> tuple[Outcome, float, float]:
        sent = time.perf_counter() - t0
        outcome = await _claim(engine, cid, user, coupons)
        return outcome, sent, time.perf_counter() - t0

    results = await asyncio.gather(*(one(u) for u in users))
    elapsed = time.perf_counter() - t0
    claims = len(users)
    sold = sum(1 for o, _, _ in results if o is Outcome.OK)
    assert sold == stock, f"sold {sold} of {stock}"
    first_sold_out = min(done for o, _, done in results if o is Outcome.SOLD_OUT)
    last_ok_sent = max(sent for o, sent, _ in results if o is Outcome.OK)
    return {"claims_per_s": claims / elapsed, "moves": engine.shards.moves - moves0,
            "false_sold_out_ms": max(0.0, last_ok_sent - first_sold_out) * 1000}


async def _skewed(engine: Engine, cid: str, stock: int, concurrency: int,
                  seed: int) -> dict[str, float]:
    """A sustained skewed sale until sold out, with the sweeper running beside."""
    n = SKEW_SHARDS
    await engine.define_campaign(cid, harness.open_sale(stock, per_user=None, shards=n))
    rng = random.Random(seed)
    hot = (u for i in range(10**9) if shard_of_user(u := f"h{seed}-{i}", n) == 0)
    cold = (u for i in range(10**9) if shard_of_user(u := f"c{seed}-{i}", n) != 0)
    dry0, moves0 = engine.shards.dry, engine.shards.moves
    top0, units0 = engine.rebalancer.moves, engine.rebalancer.units
    first_sold_out = float("inf")
    last_ok_sent = 0.0
    claims = sold = 0
    done = asyncio.Event()
    interval = engine.settings.hold_sweep_interval_ms / 1000

    async def sweeper() -> None:  # as `serve` runs it
        while not done.is_set():
            await engine.sweep(cid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), interval)

    t0 = time.perf_counter()

    async def claimant() -> None:
        nonlocal first_sold_out, last_ok_sent, claims, sold
        while True:
            user = next(hot) if rng.random() < HOT_SHARE else next(cold)
            sent = time.perf_counter() - t0
            r = await engine.claim(cid, user, "hot", 1)
            claims += 1
            if r.outcome is Outcome.OK:
                sold += 1
                last_ok_sent = max(last_ok_sent, sent)
                continue
            assert r.outcome is Outcome.SOLD_OUT, r
            first_sold_out = min(first_sold_out, time.perf_counter() - t0)
            return

    sweeping = asyncio.create_task(sweeper())
    await asyncio.gather(*(claimant() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    done.set()
    await sweeping
    assert sold == stock, f"sold {sold} of {stock}"
    report = await audit(engine.redis, cid, n)
    assert report.problems == [], report.problems
    return {"claims_per_s": claims / elapsed, "seconds": elapsed,
            "dry_claims": engine.shards.dry - dry0,
            "top_ups": engine.rebalancer.moves - top0,
            "top_up_units": engine.rebalancer.units - units0,
            "dry_moves": engine.shards.moves - moves0 - (engine.rebalancer.moves - top0),
            "false_sold_out_ms": max(0.0, last_ok_sent - first_sold_out) * 1000}


async def _skew_rounds(top: Topology, stock: int, rounds: int, concurrency: int,
                       res: Results) -> None:
    """Rebalancer off and on in turn, each its own engine on the same cluster."""
    engines = {}
    for mode, on in REBALANCE.items():
        engines[mode] = Engine.from_url(top.url, dataclasses.replace(
            top.settings(), shard_rebalance=on))
        await engines[mode].start()
    try:
        for r in range(rounds):
            for i, (mode, engine) in enumerate(engines.items()):
                console.log(f"skewed sale {r + 1}/{rounds}: {mode}")
                res.skewed.setdefault(mode, []).append(
                    await _skewed(engine, f"skew-r{r}-{i}", stock, concurrency, r))
    finally:
        for engine in engines.values():
            await engine.close()


async def run(seconds: float, rounds: int, concurrency: int, sellout: int,
              replicas: int, skew_stock: int, skew_rounds: int,
              skew_only: bool, coupons: bool = False) -> Results:
    res = Results()
    with _topologies(replicas) as tops:
        by_name = {t.name: t for t in tops}
        if skew_only:
            await _skew_rounds(by_name["cluster"], skew_stock, skew_rounds, concurrency, res)
            return res
        for top in tops:
            top.engine = Engine.from_url(top.url, top.settings())
            await top.engine.start()
        try:
            if not coupons:
                await _skew_rounds(by_name["cluster"], skew_stock, skew_rounds, concurrency,
                                   res)
            for r in range(rounds):
                for mode, n in MODES.items():
                    top = by_name[SINGLE if mode == SINGLE else "cluster"]
                    console.log(f"round {r + 1}/{rounds}: {mode}")
                    s = await _round(top, f"r{r}-s{n}-{top.name[0]}", n, seconds, concurrency,
                                     coupons)
                    res.rates.setdefault(mode, []).append(s.claims / s.seconds)
                    res.samples.setdefault(mode, []).append(s)
            for mode, n in MODES.items():
                top = by_name[SINGLE if mode == SINGLE else "cluster"]
                console.log(f"sell-out: {mode}")
                res.sellouts[mode] = await _sellout(top, f"so-s{n}-{top.name[0]}", n, sellout,
                                                    coupons)
        finally:
            for top in tops:
                if top.engine is not None:
                    await top.engine.close()
    return res


def _report_skewed(res: Results) -> dict[str, Any]:
    table = Table(title=f"sustained skewed sale, {SKEW_SHARDS} shards, "
                        f"{HOT_SHARE:.0%} of claims on shard 0 (median of rounds)")
    for col in ("mode", "claims/s", "ratio", "seconds", "dry-path claims", "top-ups",
                "units topped up", "dry-path moves", "false sold-out ms (max)"):
        table.add_column(col)
    figures: dict[str, Any] = {}
    base = None
    for mode, runs in res.skewed.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        med["false_sold_out_ms"] = max(r["false_sold_out_ms"] for r in runs)
        base = base or med["claims_per_s"]
        figures[mode] = {"median": med, "runs": runs}
        table.add_row(mode, f"{med['claims_per_s']:,.0f}",
                      f"{med['claims_per_s'] / base:.2f}x", f"{med['seconds']:.1f}",
                      f"{med['dry_claims']:.0f}", f"{med['top_ups']:.0f}",
                      f"{med['top_up_units']:.0f}", f"{med['dry_moves']:.0f}",
                      f"{med['false_sold_out_ms']:.1f}")
    console.print(table)
    return figures


def _report(res: Results, concurrency: int, coupons: bool = False) -> dict[str, Any]:
    skewed = _report_skewed(res) if res.skewed else {}
    what = "one hot coupon drop, coupon claims/s" if coupons else "one hot campaign, claims/s"
    medians = harness.print_rounds(
        f"{what} through the engine (no HTTP), concurrency {concurrency}",
        ("mode", "median claims/s", "rounds", "ratio"), res.rates, SINGLE)
    table = Table(title="CPU per claim (µs), all rounds; persister over its catch-up too")
    table.add_column("mode")
    table.add_column("gateway")
    table.add_column("valkey (each primary)")
    table.add_column("valkey total")
    table.add_column("persister")
    table.add_column("catch-up s")
    cpu: dict[str, dict[str, Any]] = {}
    for mode, samples in res.samples.items():
        claims = sum(s.claims for s in samples)
        per = {k: sum(s.valkey_s[k] for s in samples) / claims * 1e6
               for k in samples[0].valkey_s}
        row = {"gateway_us": sum(s.gateway_s for s in samples) / claims * 1e6,
               "valkey_us": per, "valkey_total_us": sum(per.values()),
               "persister_us": sum(s.persister_s for s in samples) / claims * 1e6,
               "catch_up_s": statistics.median(s.persisted_s for s in samples)}
        cpu[mode] = row
        table.add_row(mode, f"{row['gateway_us']:.0f}",
                      ", ".join(f"{v:.0f}" for v in per.values()),
                      f"{row['valkey_total_us']:.0f}", f"{row['persister_us']:.0f}",
                      f"{row['catch_up_s']:.1f}")
    console.print(table)
    sell = Table(title="skewed sell-out: 2.25x the stock claimed at once, 8/9 on shard 0")
    for col in ("mode", "claims/s", "moves", "false sold-out window ms"):
        sell.add_column(col)
    for mode, s in res.sellouts.items():
        sell.add_row(mode, f"{s['claims_per_s']:,.0f}", f"{s['moves']:.0f}",
                     f"{s['false_sold_out_ms']:.1f}")
    console.print(sell)
    return {"rates": res.rates, "medians": medians, "cpu_per_claim": cpu,
            "sellouts": res.sellouts, "skewed": skewed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--sellout", type=int, default=2000, help="units of the sell-out")
    parser.add_argument("--replicas", type=int, default=0, help="replicas per primary")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--skew-stock", type=int, default=20_000,
                        help="units of each sustained skewed sale")
    parser.add_argument("--skew-rounds", type=int, default=2,
                        help="skewed sales per mode (rebalancer off, on)")
    parser.add_argument("--skew-only", action="store_true",
                        help="run only the rebalancer comparison")
    parser.add_argument("--coupons", action="store_true",
                        help="a coupon drop in place of the sale; no skewed sale")
    args = parser.parse_args()
    res = uvloop.run(run(args.seconds, args.rounds, args.concurrency, args.sellout,
                         args.replicas, args.skew_stock, args.skew_rounds, args.skew_only,
                         args.coupons))
    figures = _report_skewed(res) if args.skew_only else \
        _report(res, args.concurrency, args.coupons)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
