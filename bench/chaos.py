"""The chaos drill for as long as you like: the faults of tests/system/test_chaos.py in turn.

    python -m bench.chaos [--minutes 5] [--buyers 16] [--sqlite] [--json out.json]

A real `stampede serve` (embedded Valkey; a throwaway PostgreSQL, or SQLite
with --sqlite, which leaves out the store stop) takes a steady load of
claims, confirms and cancels from buyers that record every answer, while
these faults come one after another until the time is up:

    valkey_kill     kill -9 the embedded Valkey (serve restarts it from its AOF)
    persister_kill  kill -9 the persister (serve restarts it)
    service_kill    kill -9 serve, start it again on the same data directory
    store_stop      stop PostgreSQL for --store-down seconds, start it again
    campaign_flush  delete the campaign's state keys in Redis (the stream stays)

After each fault the load pauses while the checks run: every claim a buyer
saw confirmed is in the store within --catch-up-bound seconds, `stampede
audit` is clean (nothing oversold, nothing done twice), no dead letter, no
key answered two claims, no 5xx but 503 and no 404. The report gives per
fault: time to heal, store catch-up time, requests refused (503) and
unreachable (the service down), and any problem. Exit 1 on a problem.
The logic is stampede.runtime.chaos.
"""

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stampede.runtime.chaos import Drill, FaultReport

console = Console(width=140)


async def drill(args: argparse.Namespace) -> list[FaultReport]:
    reports: list[FaultReport] = []
    budget = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="stampede-chaos-") as tmp:
        async with Drill(Path(tmp), postgresql=not args.sqlite, buyers=args.buyers,
                         catch_up_bound_s=args.catch_up_bound,
                         store_down_s=args.store_down, appendfsync=args.appendfsync) as d:
            started = time.monotonic()
            with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                          TextColumn("{task.fields[last]}"), console=console) as progress:
                task = progress.add_task("chaos", total=budget, last="")
                i = 0
                while time.monotonic() - started < budget:
                    fault = d.faults()[i % len(d.faults())]
                    progress.update(task, description=f"{fault:<15}")
                    report = await d.run_fault(fault, load_s=args.load)
                    reports.append(report)
                    mark = "ok" if report.ok else f"[red]{'; '.join(report.problems)}[/]"
                    progress.update(task, completed=min(budget, time.monotonic() - started),
                                    last=f"{fault}: heal {report.heal_s}s, catch-up "
                                         f"{report.catch_up_s}s, {mark}")
                    i += 1
    return reports


def summarize(reports: list[FaultReport]) -> Table:
    table = Table(title="chaos drill: per fault")
    for name in ("fault", "runs", "heal s (median / max)", "catch-up s (median / max)",
                 "refused 503", "unreachable", "answers", "lost to AOF", "problems"):
        table.add_column(name, justify="left" if name in ("fault", "problems") else "right")
    for fault in dict.fromkeys(r.fault for r in reports):
        rs = [r for r in reports if r.fault == fault]
        heal = [r.heal_s for r in rs]
        catch = [r.catch_up_s for r in rs]
        problems = [p for r in rs for p in r.problems]
        table.add_row(fault, str(len(rs)),
                      f"{statistics.median(heal):.2f} / {max(heal):.2f}",
                      f"{statistics.median(catch):.2f} / {max(catch):.2f}",
                      str(sum(r.refused for r in rs)), str(sum(r.unreachable for r in rs)),
                      str(sum(r.answers for r in rs)), str(sum(r.lost_to_aof for r in rs)),
                      "[red]" + "; ".join(problems)[:200] + "[/]" if problems else "none")
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--buyers", type=int, default=16)
    parser.add_argument("--load", type=float, default=3.0,
                        help="seconds of load before and after each fault")
    parser.add_argument("--store-down", type=float, default=5.0)
    parser.add_argument("--appendfsync", choices=("everysec", "always"), default="everysec",
                        help="the embedded Valkey's AOF mode; under always no loss is tolerated")
    parser.add_argument("--catch-up-bound", type=float, default=30.0)
    parser.add_argument("--sqlite", action="store_true", help="SQLite store (no store stop)")
    parser.add_argument("--json", type=Path, help="write every fault's figures here")
    args = parser.parse_args()
    reports = uvloop.run(drill(args))
    console.print(summarize(reports))
    confirmed = reports[-1].confirmed_total if reports else 0
    console.print(f"{len(reports)} faults, {confirmed} claims confirmed by the buyers, "
                  f"catch-up bound {args.catch_up_bound}s")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
    return 0 if reports and all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
