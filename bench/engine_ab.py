"""This checkout's engine against another checkout's, back to back: claims/s and Redis bytes.

Runs `python -m bench.engine_claims` of each checkout in turn (each in its own
process, on its own embedded Valkey), alternating which goes first, `--pairs`
times, then each checkout's memory per user holding a claim (bench.e2e's
MEMORY USAGE measure). Prints each mode's median claims/s before and after,
their ratio, and each checkout's guard/plain and presale/plain ratios.

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
    memory = {side: _memory(path, args.users) for side, path in sides.items()}
    for side, m in memory.items():
        parts = ", ".join(f"{k} {v:.0f}" for k, v in m["by_structure"].items())
        console.print(f"{side}: {m['state_per_user']:.0f} bytes per user holding a claim "
                      f"({parts}); stream {m['events_per_user']:.0f} per claim event")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "medians": med, "memory": memory},
                                        indent=2))


if __name__ == "__main__":
    main()
