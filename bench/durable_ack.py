"""The cost of durable acknowledgement (STAMPEDE_DURABLE_ACK): claims/s and latency
beside the default, in one run.

Four engines, each on an embedded Valkey of its own, run batched claims (no
HTTP) round by round, interleaved so that machine drift hits them alike:

    default            appendfsync everysec, answered before any fsync (the baseline)
    always             appendfsync always: each event-loop turn's writes fsynced
                       before Valkey replies, no WAITAOF
    durable, everysec  WAITAOF after each batch: answered after the next
                       once-a-second fsync
    durable, always    WAITAOF after each batch, which finds it already synced

Each claim's latency is taken from its submission to its answer; the table
gives the median claims/s over the rounds, its ratio to the default and the
p50/p99 latency over every claim of every round. After each round the
campaign's accounting is checked (nothing oversold, every answered hold there).

    python -m bench.durable_ack [--seconds 3] [--rounds 2] [--concurrency 256]
"""

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import uvloop
from rich.console import Console
from rich.table import Table

from bench import harness
from stampede import Engine, Outcome, Settings
from stampede.runtime.valkey import EmbeddedValkey

console = Console()
MODES = {"default": ("everysec", False), "always": ("always", False),
         "durable, everysec": ("everysec", True), "durable, always": ("always", True)}


@asynccontextmanager
async def _engine(appendfsync: str, durable: bool) -> AsyncIterator[Engine]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp), appendfsync=appendfsync)
        try:
            engine = Engine.from_url(server.start(),
                                     Settings(data_dir=Path(tmp), durable_ack=durable))
            await engine.start()
            try:
                yield engine
            finally:
                await engine.close()
        finally:
            server.stop()


async def _round(engine: Engine, cid: str, seconds: float, concurrency: int,
                 latencies: list[float]) -> float:
    await engine.define_campaign(cid, harness.open_sale(50_000_000, per_user=None))

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
    return rate


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(seconds: float, rounds: int, concurrency: int) -> dict[str, dict[str, object]]:
    async with AsyncExitStack() as stack:
        engines = {name: await stack.enter_async_context(_engine(*how))
                   for name, how in MODES.items()}
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        latencies: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(rounds):
            for name, engine in engines.items():
                console.log(f"round {r + 1}/{rounds}: {name}")
                rates[name].append(await _round(engine, f"bench{r}", seconds, concurrency,
                                                latencies[name]))
    base = statistics.median(rates["default"])
    return {m: {"rates": rates[m], "median": statistics.median(rates[m]),
                "ratio": statistics.median(rates[m]) / base,
                "p50_ms": _pct(latencies[m], 0.50), "p99_ms": _pct(latencies[m], 0.99)}
            for m in MODES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    figures = uvloop.run(run(args.seconds, args.rounds, args.concurrency))
    table = Table(title=f"engine claims (no HTTP), concurrency {args.concurrency}")
    for col in ("mode", "median claims/s", "rounds", "ratio", "p50 ms", "p99 ms"):
        table.add_column(col)
    for name, f in figures.items():
        rates = f["rates"]
        assert isinstance(rates, list)
        table.add_row(name, f"{f['median']:,.0f}", ", ".join(f"{x:,.0f}" for x in rates),
                      f"{f['ratio']:.2f}x", f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
