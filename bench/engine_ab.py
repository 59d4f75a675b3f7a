"""This checkout's engine against another checkout's, back to back: claims/s and Redis bytes.

Runs `python -m bench.engine_claims` of each checkout in turn (each in its own
process, on its own embedded Valkey), alternating which goes first, `--pairs`
times, then each checkout's memory per user holding a claim (bench.e2e's
MEMORY USAGE measure). Prints each mode's median claims/s before and after,
their ratio, and each checkout's guard/plain and presale/plain ratios; then the
CPU per claim of each mode (Valkey's own, and the engine process's with its
claimers), alternating again: on a busy machine claims/s swing with the
neighbours, CPU per claim much less (one core's worth of a claim is Valkey's
plus the engine's: throughput ~ 1 / their sum when each batch waits for the last).

    git worktree add --detach /tmp/before main   # the code to compare against
    python -m bench.engine_ab --before /tmp/before [--pairs 3] [--seconds 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
HERE = Path(__file__).resolve().parent.parent

_MEMORY = ("import json; from bench.e2e import _memory_per_held_user; "
           "print(json.dumps(_memory_per_held_user({users})))")

# CPU per claim, run in each checkout (it uses only what both have: the engine,
# bench.harness and bench.engine_claims' campaign specs): Valkey's own CPU (INFO
# cpu) and this process's (the engine and its 256 claimers) over a round of each
# mode. On a busy machine claims/s swing with the neighbours; CPU per claim much less.
_CPU = """
import asyncio, json, sys, time
import uvloop
from bench import harness
from bench.engine_claims import GUARD, _spec
from stampede.domain.throttle import ClientSignals

async def main(seconds):
    out = {}
    async with harness.fresh_engine() as engine:
        async def guarded(cid, user, sku, qty):
            n = hash(user) & 0xFFFFFF
            return await engine.claim(cid, user, sku, qty, client=ClientSignals(
                device=f"dev-{user}", network=f"10.{n >> 16}.{n >> 8 & 255}.0/24",
                account_age_s=400 * 86_400))
        async def presale(cid, user, sku, qty):
            return await engine.claim(cid, user, sku, qty, tiers=("newsletter", "member"),
                                      identity=f"h-{user}", channel="app")
        for mode, fn, guard, phased in (("batched", engine.claim, None, False),
                                        ("batched + guard", guarded, GUARD, False),
                                        ("batched + presale", presale, None, True)):
            cid = "cpu" + str(len(out))
            await engine.define_campaign(cid, _spec(50_000_000, guard, phased))
            done = 0
            stop = time.perf_counter() + seconds
            async def worker(w):
                nonlocal done
                i = 0
                while time.perf_counter() < stop:
                    await fn(cid, f"w{w}-{i}", "hot", 1)
                    done += 1
                    i += 1
            c0 = await engine.redis.info("cpu")
            p0 = time.process_time()
            await asyncio.gather(*(worker(w) for w in range(256)))
            p1 = time.process_time()
            c1 = await engine.redis.info("cpu")
            valkey = sum(float(c1[k]) - float(c0[k]) for k in ("used_cpu_user", "used_cpu_sys"))
            out[mode] = {"valkey_us": valkey / done * 1e6, "client_us": (p1 - p0) / done * 1e6}
    print(json.dumps(out))

uvloop.run(main(float(sys.argv[1])))
"""


def _env(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(checkout)}


def _claims(checkout: Path, seconds: float, rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rates.json"
        subprocess.run([sys.executable, "-m", "bench.engine_claims", "--seconds", str(seconds),
                        "--rounds", str(rounds), "--json", str(out)], cwd=checkout,
                       env=_env(checkout), check=True, stdout=subprocess.DEVNULL)
        rates: dict[str, list[float]] = json.loads(out.read_text())["rates"]
        return rates


def _memory(checkout: Path, users: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _MEMORY.format(users=users)], cwd=checkout,
                          env=_env(checkout), check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _cpu(checkout: Path, seconds: float) -> dict[str, dict[str, float]]:
    done = subprocess.run([sys.executable, "-c", _CPU, str(seconds)], cwd=checkout,
                          env=_env(checkout), check=True, capture_output=True, text=True)
    result: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1, help="rounds per engine_claims run")
    parser.add_argument("--users", type=int, default=20_000, help="holding users, for memory")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    sides = {"before": args.before.resolve(), "after": HERE}
    rates: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for i in range(args.pairs):
        for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
            console.log(f"pair {i + 1}/{args.pairs}: {side}")
            for mode, got in _claims(sides[side], args.seconds, args.rounds).items():
                rates[side].setdefault(mode, []).extend(got)
    med = {side: {m: statistics.median(v) for m, v in r.items()} for side, r in rates.items()}
    table = Table(title="engine claims/s (no HTTP), medians of every round")
    for col in ("mode", "before", "after", "after / before"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode in med["after"]:
        b, a = med["before"].get(mode), med["after"][mode]
        table.add_row(mode, f"{b:,.0f}" if b else "-", f"{a:,.0f}", f"{a / b:.2f}x" if b else "-")
    console.print(table)
    for side in sides:
        m = med[side]
        console.print(f"{side}: guard / plain {m['batched + guard'] / m['batched']:.2f}, "
                      f"presale / plain {m['batched + presale'] / m['batched']:.2f}")
    cpu: dict[str, dict[str, list[dict[str, float]]]] = {"before": {}, "after": {}}
    for i in range(args.pairs):
        for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
            console.log(f"CPU per claim, pair {i + 1}/{args.pairs}: {side}")
            for mode, got in _cpu(sides[side], args.seconds).items():
                cpu[side].setdefault(mode, []).append(got)
    table = Table(title="CPU µs per claim, medians (Valkey's own; the engine process's)")
    for col in ("mode", "Valkey before", "Valkey after", "after / before",
                "engine before", "engine after", "sum after / before"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    cpu_med: dict[str, dict[str, dict[str, float]]] = {}
    for side, by_mode in cpu.items():
        cpu_med[side] = {m: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                         for m, rows in by_mode.items()}
    for mode, a in cpu_med["after"].items():
        b = cpu_med["before"][mode]
        sums = (a["valkey_us"] + a["client_us"]) / (b["valkey_us"] + b["client_us"])
        table.add_row(mode, f"{b['valkey_us']:.1f}", f"{a['valkey_us']:.1f}",
                      f"{a['valkey_us'] / b['valkey_us']:.2f}", f"{b['client_us']:.1f}",
                      f"{a['client_us']:.1f}",
                      f"{sums:.2f}")
    console.print(table)
    for side, m in cpu_med.items():
        total = {mode: v["valkey_us"] + v["client_us"] for mode, v in m.items()}
        console.print(f"{side}, by CPU per claim: guard / plain "
                      f"{total['batched'] / total['batched + guard']:.2f}, presale / plain "
                      f"{total['batched'] / total['batched + presale']:.2f}")
    memory = {side: _memory(path, args.users) for side, path in sides.items()}
    for side, m in memory.items():
        parts = ", ".join(f"{k} {v:.0f}" for k, v in m["by_structure"].items())
        console.print(f"{side}: {m['state_per_user']:.0f} bytes per user holding a claim "
                      f"({parts}); stream {m['events_per_user']:.0f} per claim event")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "medians": med, "cpu": cpu_med,
                                         "memory": memory}, indent=2))


if __name__ == "__main__":
    main()
