"""Claims per second through the engine alone (no HTTP): batched vs one call per claim,
and batched with the scalper guard on.

All modes run in the same process, against the same embedded Valkey,
interleaved round by round so that machine drift hits them alike. After
each round the campaign's accounting is checked (nothing oversold).

"batched + guard" is a guarded campaign (every check configured: rates per
user, device, network and campaign, accounts per device and network, risk
rules) whose limits every claim passes, each claim with its own device and
network: the cost of throttling a claim that is let through.

"batched + presale" is a presale campaign with three access phases (vip,
members, everyone; all open) and three price steps (an early bird for
members, one by units sold that every claim passes, one by time), each
claimant carrying two tiers of which the second is the members', and a
real-name `per_person` limit (each claimant its own identity, within it), and
the SKU's stock split into allocations (half for channel app, a quarter for
tier member, the rest shared; every claim comes through app): the cost of
deciding a claimant's phase, person, allocation and price in the script.

"batched + presale + bundles" is that presale campaign with a merchandise SKU
and a ticket + merch bundle beside the ticket: every other claim is the
bundle (two lines, two units: both SKUs' limits, allocations and price steps
checked, all or nothing), the rest single tickets. Its figure counts claims
(a bundle is one); units/s are reported too.

    python -m bench.engine_claims [--seconds 3] [--rounds 3] [--concurrency 256]
"""

import argparse
import json
import statistics
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from rich.console import Console

from bench import harness
from stampede import Engine, Outcome
from stampede.domain.engine import ClaimResult
from stampede.domain.models import CampaignSpec
from stampede.domain.throttle import ClientSignals

console = Console()
ClaimFn = Callable[[str, str, str, int], Awaitable[ClaimResult]]


GUARD = {"user": {"per_s": 1000, "burst": 100}, "device": {"per_s": 1000, "burst": 100},
         "network": {"per_s": 100_000, "burst": 100_000},
         "campaign": {"per_s": 100_000, "burst": 100_000},
         "accounts_per_device": {"challenge_above": 5, "reject_above": 10},
         "accounts_per_network": {"challenge_above": 50, "reject_above": 100},
         "risk": [{"signal": "account_age_s", "below": 86_400, "action": "challenge"},
                  {"signal": "lapses", "above": 5, "action": "reject"}]}


RATES_ONLY = {k: GUARD[k] for k in ("user", "device", "network")}


def _phases(now: datetime) -> list[dict[str, Any]]:
    return [{"name": "vip", "opens_at": (now - timedelta(seconds=50)).isoformat(),
             "tiers": ["vip", "press"]},
            {"name": "members", "opens_at": (now - timedelta(seconds=40)).isoformat(),
             "tiers": ["member", "fanclub"]},
            {"name": "public", "opens_at": (now - timedelta(seconds=30)).isoformat()}]


def _price_steps(now: datetime) -> list[dict[str, Any]]:
    return [{"price": 80, "tiers": ["vip"], "until": (now + timedelta(hours=1)).isoformat()},
            {"price": 85, "first_units": 10},
            {"price": 90, "until": (now + timedelta(minutes=59)).isoformat()}]


def _spec(stock: int, guard: dict[str, Any] | None = None,
          phased: bool = False, bundled: bool = False) -> CampaignSpec:
    now = datetime.now(UTC)
    merch = [{"sku": "tee", "price": 30, "price_steps": [{"price": 25, "first_units": 10}],
              "waves": [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": stock}]}]
    return msgspec.convert({**({"throttle": guard} if guard else {}),
        **({"phases": _phases(now)} if phased else {}),
        **({"bundles": {"fan": {"lines": [{"sku": "hot"}, {"sku": "tee"}]}}}
           if bundled else {}),
        "name": "bench", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(),
        "limits": {"per_user": 2, **({"per_person": 2} if phased else {})},
        "skus": [{"sku": "hot", "price": 100,
                  **({"price_steps": _price_steps(now),
                      "allocations": [
                          {"name": "app", "qty": stock // 2, "channels": ["app"]},
                          {"name": "members", "qty": stock // 4, "tiers": ["member"]}]}
                     if phased else {}),
                  "waves": [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": stock}]},
                 *(merch if bundled else [])]},
        CampaignSpec)


VALKEY_US: dict[str, list[float]] = {}
"""Valkey's own CPU (user + system, INFO cpu) per claim, by mode, each round."""


async def _valkey_cpu(engine: Engine) -> float:
    cpu = await engine.redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _round(engine: Engine, cid: str, claim: ClaimFn, seconds: float,
                 concurrency: int, guard: dict[str, Any] | None = None,
                 phased: bool = False, bundled: bool = False,
                 mode: str = "") -> tuple[float, float]:
    """(claims/s, units/s) of one round."""
    await engine.define_campaign(cid, _spec(50_000_000, guard, phased, bundled))
    cpu_before = await _valkey_cpu(engine)
    units = 0

    async def step(w: int, i: int) -> bool:
        nonlocal units
        result = await claim(cid, f"w{w}-{i}", "hot", 1)
        assert result.outcome is Outcome.OK and result.claim, result
        units += sum(x.qty for x in result.claim.lines) if result.claim.lines \
            else result.claim.qty
        return True

    done, rate = await harness.drive(seconds, concurrency, step)
    VALKEY_US.setdefault(mode, []).append((await _valkey_cpu(engine) - cpu_before) / done * 1e6)
    stats = await engine.stats(cid)
    assert stats is not None
    assert sum(s.held for s in stats.skus) == units, "accounting broken"
    for s in stats.skus:
        assert s.available + s.held + s.sold == s.released, "accounting broken"
    await harness.drop_campaign(engine, cid)  # freed before the next mode is measured
    return rate, units * rate / done


async def run(seconds: float, rounds: int, concurrency: int,
              guard: str = "full") -> dict[str, list[float]]:
    guards = {"batched + guard": GUARD if guard == "full" else RATES_ONLY}
    async with harness.fresh_engine() as engine:

        async def guarded(cid: str, user: str, sku: str, qty: int) -> ClaimResult:
            n = hash(user) & 0xFFFFFF
            return await engine.claim(cid, user, sku, qty, client=ClientSignals(
                device=f"dev-{user}", network=f"10.{n >> 16}.{n >> 8 & 255}.0/24",
                account_age_s=400 * 86_400))

        async def presale(cid: str, user: str, sku: str, qty: int) -> ClaimResult:
            return await engine.claim(cid, user, sku, qty, tiers=("newsletter", "member"),
                                      identity=f"h-{user}", channel="app")

        async def bundles(cid: str, user: str, sku: str, qty: int) -> ClaimResult:
            if hash(user) & 1:  # every other claim, the ticket + merch bundle
                return await engine.claim_bundle(cid, user, bundle="fan",
                                                 tiers=("newsletter", "member"),
                                                 identity=f"h-{user}", channel="app")
            return await presale(cid, user, sku, qty)

        modes: dict[str, ClaimFn] = {"batched": engine.claim,
                                     "one call per claim": engine.claim_unbatched,
                                     "batched + guard": guarded,
                                     "batched + presale": presale,
                                     BUNDLED: bundles}
        rates: dict[str, list[float]] = {m: [] for m in modes}
        rates[BUNDLED_UNITS] = []
        for r in range(rounds):
            for name, fn in modes.items():
                console.log(f"round {r + 1}/{rounds}: {name}")
                claims, units = await _round(engine, f"bench{r}", fn, seconds, concurrency,
                                             guard=guards.get(name),
                                             phased=name.startswith("batched + presale"),
                                             bundled=name == BUNDLED, mode=name)
                rates[name].append(claims)
                if name == BUNDLED:
                    rates[BUNDLED_UNITS].append(units)
    return rates


BUNDLED = "batched + presale + bundles"
BUNDLED_UNITS = "  (the same, units/s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--guard", choices=("full", "rates"), default="full",
                        help="the guarded campaign's config: every check, or the three rates")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    rates = uvloop.run(run(args.seconds, args.rounds, args.concurrency, args.guard))
    medians = harness.print_rounds(
        f"engine claims/s (no HTTP), concurrency {args.concurrency}",
        ("mode", "median claims/s", "rounds", "ratio"), rates, "one call per claim")
    console.print(f"guard cost: batched + guard / batched = "
                  f"{medians['batched + guard'] / medians['batched']:.2f}")
    console.print(f"presale: batched + presale / batched = "
                  f"{medians['batched + presale'] / medians['batched']:.2f}")
    console.print(f"bundles: {BUNDLED} / batched = "
                  f"{medians[BUNDLED] / medians['batched']:.2f} in claims, "
                  f"{medians[BUNDLED_UNITS] / medians['batched']:.2f} in units")
    valkey = {m: statistics.median(v) for m, v in VALKEY_US.items()}
    console.print("Valkey CPU µs per claim (median): " + ", ".join(
        f"{m} {us:.1f}" for m, us in valkey.items()))
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "medians": medians,
                                         "valkey_us_per_claim": valkey}, indent=2))


if __name__ == "__main__":
    main()
