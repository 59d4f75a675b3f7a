"""What the acknowledgement benches share (bench/durable_ack.py, bench/cluster_wait.py):
a round of one hot campaign claimed as fast as answers come, each mode's figures,
and the command line that prints them.

Each bench runs its modes' engines round by round, interleaved so that machine
drift hits them alike; a round is a fresh campaign claimed by `--concurrency`
coroutines (batched claims, no HTTP), its accounting checked after the round.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import uvloop
from rich.console import Console
from rich.table import Table

from bench import harness
from stampede import Engine, Outcome

Figures = dict[str, dict[str, object]]


async def hot_campaign(engine: Engine, cid: str) -> None:
    """A fresh open campaign of one SKU, "hot", with more units than any round sells."""
    await engine.define_campaign(cid, harness.open_sale(50_000_000, per_user=None))


async def claim_round(engine: Engine, cid: str, seconds: float, concurrency: int,
                      latencies: list[float]) -> tuple[int, float]:
    """Claim one unit of `cid`'s "hot" after another for `seconds`; each claim's latency
    (submission to answer) goes to `latencies`. Returns (claims, claims/s) once the
    campaign's accounting is checked (nothing oversold, every answered hold there)."""
    async def step(w: int, i: int) -> bool:
        started = time.perf_counter()
        result = await engine.claim(cid, f"w{w}-{i}", "hot", 1)
        latencies.append(time.perf_counter() - started)
        assert result.outcome is Outcome.OK, result
        return True

    done, rate = await harness.drive(seconds, concurrency, step)
    stats = await engine.stats(cid)
    assert stats is not None
    s = stats.skus[0]
    assert s.held == done and s.available + s.held + s.sold == s.released, "accounting broken"
    return done, rate


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def figures(rates: Mapping[str, list[float]], latencies: Mapping[str, list[float]],
            baseline: str) -> Figures:
    """Per mode: its rounds' claims/s, their median and its ratio to `baseline`'s, and
    the p50/p99 latency (ms) over every claim of every round."""
    base = statistics.median(rates[baseline])
    return {m: {"rates": rates[m], "median": statistics.median(rates[m]),
                "ratio": statistics.median(rates[m]) / base,
                "p50_ms": _pct(latencies[m], 0.50), "p99_ms": _pct(latencies[m], 0.99)}
            for m in rates}


def main(description: str, run: Callable[[float, int, int], Coroutine[Any, Any, Figures]],
         title: str, per_claim: Mapping[str, str] | None = None) -> None:
    """Parse the benches' common options, run, print the table (and the JSON if asked).
    `per_claim`: more columns, title -> a figure printed in whole units."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    found = uvloop.run(run(args.seconds, args.rounds, args.concurrency))
    table = Table(title=f"{title}, concurrency {args.concurrency}")
    extra = per_claim or {}
    for col in ("mode", "median claims/s", "rounds", "ratio", "p50 ms", "p99 ms", *extra):
        table.add_column(col)
    for name, f in found.items():
        rates = f["rates"]
        assert isinstance(rates, list)
        table.add_row(name, f"{f['median']:,.0f}", ", ".join(f"{x:,.0f}" for x in rates),
                      f"{f['ratio']:.2f}x", f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}",
                      *(f"{f[key]:.0f}" for key in extra.values()))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
