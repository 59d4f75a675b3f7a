"""Fairness of an opening: who gets the stock, humans or bots, with protection off and on.

A simulated opening through the engine (no HTTP), on an embedded Valkey, in
real time:

- humans: one claim attempt each, after an arrival spread and a think
  time; most on their own network, some behind shared carrier NATs, some
  on an allow-listed campus NAT; some with young accounts. A human's
  front-end solves a challenge (at a browser's hash rate) and honours a
  Retry-After of up to 10 s, at most four tries in all; their final answer
  is what counts.
- bots: a few farms, each on one network with two devices (--bot-devices), rotating many
  young accounts and firing hundreds of requests per second from the
  opening on; they solve the challenges they get and ignore Retry-After.

Reported per mode: the share of the stock each side took, and the share of
humans wrongly refused (their final answer a guard refusal, not sold_out).

    python -m bench.fairness [--humans 3000] [--stock 500] [--farms 3] [--json out.json]
"""

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from rich.console import Console
from rich.table import Table

from bench import harness
from stampede import Engine, Outcome
from stampede.domain import pow
from stampede.domain.engine import ClaimResult
from stampede.domain.models import CampaignSpec
from stampede.domain.throttle import ClientSignals

console = Console()
CAMPUS = "198.18.0.0/24"
DAY = 86_400

PROTECTION: dict[str, Any] = {
    "user": {"per_s": 0.5, "burst": 3},
    "device": {"per_s": 1, "burst": 5},
    "network": {"per_s": 20, "burst": 60},
    "accounts_per_device": {"challenge_above": 2, "reject_above": 3},
    "accounts_per_network": {"challenge_above": 15, "reject_above": 200},
    "risk": [{"signal": "account_age_s", "below": 7 * DAY, "action": "challenge"},
             {"signal": "lapses", "above": 3, "action": "reject"}],
    "allow": {"networks": [CAMPUS]},
    "challenge": {"base_bits": 12, "step_bits": 2, "max_bits": 16},
}


@dataclass
class Tally:
    units: Counter[str] = field(default_factory=Counter)
    """Units held, by side."""
    human_final: Counter[str] = field(default_factory=Counter)
    bot_answers: Counter[str] = field(default_factory=Counter)
    human_challenges: int = 0
    bot_solves: int = 0


def _spec(stock: int, protect: bool) -> CampaignSpec:
    now = datetime.now(UTC)
    raw: dict[str, Any] = {
        "name": "fairness", "opens_at": (now - timedelta(seconds=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(), "limits": {"per_user": 1},
        "skus": [{"sku": "drop", "price": 100,
                  "waves": [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": stock}]}]}
    if protect:
        raw["throttle"] = PROTECTION
    return msgspec.convert(raw, CampaignSpec)


async def _solve(result: ClaimResult, hashrate: float) -> tuple[str, str]:
    """Solve for real, and wait as long as a client of `hashrate` hashes/s would."""
    ch = result.challenge
    assert ch is not None
    started = time.perf_counter()
    solution = pow.solve(ch.token, ch.difficulty)
    spent = time.perf_counter() - started
    await asyncio.sleep(max(0.0, 2 ** ch.difficulty / hashrate - spent))
    return ch.token, solution


def _networks(rng: random.Random, humans: int, nat_share: float, nats: int) -> list[str]:
    """5% on the (allow-listed) campus, `nat_share` behind `nats` carrier NATs, the rest alone."""
    nets = []
    for i in range(humans):
        r = rng.random()
        if r < 0.05:
            nets.append(CAMPUS)
        elif r < 0.05 + nat_share:
            nets.append(f"100.64.{rng.randrange(nats)}.0/24")
        else:
            nets.append(f"10.{i // 256 % 256}.{i % 256}.0/24")
    return nets


async def _human(engine: Engine, cid: str, i: int, net: str, young: bool, delay: float,
                 tally: Tally) -> None:
    await asyncio.sleep(delay)
    user = f"h{i}"
    signals = {"device": f"hd{i // 2 if i % 20 == 0 else i}",  # a few share a family device
               "network": net, "account_age_s": 3600 if young else 400 * DAY}
    result = await engine.claim(cid, user, "drop", 1, client=ClientSignals(**signals))
    solved: dict[str, str] = {}  # a front-end keeps an unspent solution for its retry
    for _ in range(4):
        if result.outcome is Outcome.CHALLENGE_REQUIRED:
            tally.human_challenges += 1
            token, solution = await _solve(result, hashrate=200_000)  # a browser
            solved = {"challenge": token, "solution": solution}
        elif result.outcome is Outcome.THROTTLED and (result.retry_after_ms or 0) <= 10_000:
            await asyncio.sleep((result.retry_after_ms or 0) / 1000)
        else:
            break
        result = await engine.claim(cid, user, "drop", 1,
                                    client=ClientSignals(**signals, **solved))
    tally.human_final[result.outcome.code] += 1
    if result.outcome is Outcome.OK:
        tally.units["humans"] += 1


async def _farm(engine: Engine, cid: str, farm: int, accounts: int, rate: float,
                devices: int, stop: asyncio.Event, tally: Tally) -> None:
    net = f"203.0.{farm}.0/24"
    pool = [f"bot{farm}-{a}" for a in range(accounts)]
    sent = 0

    async def fire(n: int) -> None:
        if not pool:
            return
        user = pool[n % len(pool)]
        signals = {"device": f"farm{farm}-dev{n % devices}", "network": net,
                   "account_age_s": DAY}
        result = await engine.claim(cid, user, "drop", 1, client=ClientSignals(**signals))
        if result.outcome is Outcome.CHALLENGE_REQUIRED:
            tally.bot_solves += 1
            token, solution = await _solve(result, hashrate=5_000_000)  # native code
            result = await engine.claim(cid, user, "drop", 1, client=ClientSignals(
                **signals, challenge=token, solution=solution))
        tally.bot_answers[result.outcome.code] += 1
        if result.outcome is Outcome.OK:
            tally.units["bots"] += 1
        if result.outcome in (Outcome.OK, Outcome.LIMIT_EXCEEDED) and user in pool:
            pool.remove(user)

    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate)
        while sent < due:
            t = asyncio.create_task(fire(sent))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)


async def _opening(engine: Engine, cid: str, args: argparse.Namespace,
                   protect: bool) -> dict[str, Any]:
    await engine.define_campaign(cid, _spec(args.stock, protect))
    rng = random.Random(args.seed)
    tally = Tally()
    nets = _networks(rng, args.humans, args.nat_share, args.nats)
    stop = asyncio.Event()
    farms = [asyncio.create_task(_farm(engine, cid, f, args.bot_accounts, args.bot_rate,
                                       args.bot_devices, stop, tally))
             for f in range(args.farms)]
    humans = [_human(engine, cid, i, nets[i], rng.random() < 0.1,
                     rng.uniform(0, args.arrival_s) + rng.uniform(0.5, 2.5), tally)
              for i in range(args.humans)]
    started = time.perf_counter()
    await asyncio.gather(*humans)
    stop.set()
    await asyncio.gather(*farms)
    took = sum(tally.units.values())
    refused = sum(n for code, n in tally.human_final.items()
                  if code in ("throttled", "blocked", "challenge_required"))
    return {
        "protection": protect, "seconds": round(time.perf_counter() - started, 1),
        "stock": args.stock, "units_taken": took,
        "bots_units": tally.units["bots"], "humans_units": tally.units["humans"],
        "bots_share_of_stock": tally.units["bots"] / args.stock,
        "humans_wrongly_refused": refused, "humans": args.humans,
        "humans_wrongly_refused_share": refused / args.humans,
        "human_challenges": tally.human_challenges, "bot_solves": tally.bot_solves,
        "human_final": dict(tally.human_final), "bot_answers": dict(tally.bot_answers),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    async with harness.fresh_engine() as engine:
        results = []
        for protect in (False, True):
            console.log(f"opening with protection {'on' if protect else 'off'}")
            cid = f"fair-{'on' if protect else 'off'}"
            results.append(await _opening(engine, cid, args, protect))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--humans", type=int, default=3000)
    parser.add_argument("--stock", type=int, default=500)
    parser.add_argument("--arrival-s", type=float, default=3.0,
                        help="humans arrive spread over this many seconds after the opening")
    parser.add_argument("--farms", type=int, default=3)
    parser.add_argument("--bot-accounts", type=int, default=250, help="accounts per farm")
    parser.add_argument("--bot-rate", type=float, default=300, help="requests/s per farm")
    parser.add_argument("--bot-devices", type=int, default=2, help="device ids per farm")
    parser.add_argument("--nat-share", type=float, default=0.10,
                        help="share of humans behind carrier NATs (not allow-listed)")
    parser.add_argument("--nats", type=int, default=30, help="how many carrier NATs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results = uvloop.run(run(args))
    table = Table(title=f"{args.humans} humans, {args.farms} bot farms "
                        f"({args.bot_rate:.0f} req/s, {args.bot_accounts} accounts each), "
                        f"{args.stock} units")
    for col in ("protection", "bots' share of stock", "humans' units",
                "humans wrongly refused", "human challenges", "bot solves", "bot answers"):
        table.add_column(col)
    for r in results:
        table.add_row("on" if r["protection"] else "off", f"{r['bots_share_of_stock']:.1%}",
                      str(r["humans_units"]),
                      f"{r['humans_wrongly_refused']} ({r['humans_wrongly_refused_share']:.2%})",
                      str(r["human_challenges"]), str(r["bot_solves"]),
                      ", ".join(f"{k} {v}" for k, v in sorted(r["bot_answers"].items())))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
