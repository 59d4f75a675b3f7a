"""What making waiting-room tickets events costs: ticket joins/s and Redis bytes per ticket,
queue_ticket.lua as it is against the same script without its `queue_ticket_issued` emit.

One process, one embedded Valkey, one engine: the two scripts take turns
(before, after, after, before, ...), each round on a campaign of its own with
fresh users (after the opening, slow admission: nearly every join only
queues), through `engine.take_ticket` as the API calls it. Valkey CPU per
ticket is INFO cpu's user+sys over the round (on a busy machine joins/s swing
with the neighbours, CPU per ticket much less). Bytes per ticket are the
`used_memory` delta of a round over its tickets (the event's stream entry
included; the persister is not running, so nothing is trimmed).

    python -m bench.queue_events_ab [--users 3000] [--pairs 3] [--concurrency 256]
"""

import argparse
import asyncio
import hashlib
import json
import statistics
import time
from pathlib import Path

import uvloop
from rich.console import Console
from rich.table import Table

from bench import harness
from bench.queue_bench import _spec, _used_memory
from stampede import Engine, Outcome
from stampede.state.scripts import Script

console = Console()
_EMIT = "  emit(now, 'queue_ticket_issued', {'user', user, 'place', tostring(score)})\n"


def _without_event(script: Script) -> Script:
    """queue_ticket as it was before tickets were events: the same text less the emit."""
    assert _EMIT in script.source, "queue_ticket.lua no longer emits as this bench expects"
    baseline = Script.__new__(Script)
    baseline.name = script.name
    baseline.source = script.source.replace(_EMIT, "")
    baseline.sha = hashlib.sha1(baseline.source.encode()).hexdigest()
    return baseline


async def _valkey_cpu_s(engine: Engine) -> float:
    cpu = await engine.redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _round(engine: Engine, cid: str, users: int,
                 concurrency: int) -> tuple[float, float, float]:
    """(joins/s, Valkey CPU µs per ticket, bytes per ticket) of `users` fresh tickets."""
    await engine.define_campaign(cid, _spec(1000, waiting_room={"rate_per_s": 50,
                                                               "max_active": 1000}))
    before, cpu = await _used_memory(engine), await _valkey_cpu_s(engine)
    counter = iter(range(users))

    async def worker() -> None:
        for i in counter:
            outcome, _, created = await engine.take_ticket(cid, f"user-{i:08d}")
            assert outcome is Outcome.OK and created

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = users / (time.perf_counter() - started)
    cpu_us = (await _valkey_cpu_s(engine) - cpu) / users * 1e6
    return rate, cpu_us, (await _used_memory(engine) - before) / users


async def run(users: int, pairs: int, concurrency: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {
        side: {"joins/s": [], "Valkey CPU µs/ticket": [], "bytes/ticket": []}
        for side in ("before", "after")}
    async with harness.fresh_engine() as engine:
        current = engine.scripts.scripts["queue_ticket"]
        baseline = _without_event(current)
        await engine.redis.script_load(baseline.source)
        sides = {"before": baseline, "after": current}
        n = 0
        for i in range(pairs):
            for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
                engine.scripts.scripts["queue_ticket"] = sides[side]
                rate, cpu_us, size = await _round(engine, f"ab{n}", users, concurrency)
                n += 1
                console.log(f"pair {i + 1}/{pairs} {side}: {rate:,.0f} joins/s, "
                            f"{cpu_us:,.1f} µs Valkey CPU/ticket, {size:,.0f} B/ticket")
                out[side]["joins/s"].append(rate)
                out[side]["Valkey CPU µs/ticket"].append(cpu_us)
                out[side]["bytes/ticket"].append(size)
        engine.scripts.scripts["queue_ticket"] = current
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3000, help="tickets per round")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    figures = uvloop.run(run(args.users, args.pairs, args.concurrency))
    med = {side: {m: statistics.median(v) for m, v in f.items()} for side, f in figures.items()}
    table = Table(title=f"waiting-room ticket joins, {args.users:,} per round, medians of "
                        f"{args.pairs} rounds each, concurrency {args.concurrency}")
    for col in ("measure", "no event (before)", "ticket event (after)", "after / before"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for measure in med["after"]:
        b, a = med["before"][measure], med["after"][measure]
        table.add_row(measure, f"{b:,.1f}", f"{a:,.1f}", f"{a / b:.2f}x")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"rounds": figures, "medians": med}, indent=2))


if __name__ == "__main__":
    main()
