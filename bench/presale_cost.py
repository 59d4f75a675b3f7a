"""What each presale feature costs Valkey per claim, beside a plain campaign, in one run.

bench.engine_claims measures "batched + presale" with every feature on at once; this
splits it: the same plain campaign with one feature each (access phases, a per_person
limit, allocations, price steps, as bench.engine_claims configures them), then all of
them, then bundles (every claim the ticket + merch bundle of two lines, and every other
one, as "batched + presale + bundles" does). All modes run in one process against one
embedded Valkey, interleaved round by round (each round starting one mode further on);
each figure is Valkey's own CPU (INFO cpu,
user + system, its AOF included) per claim, the median of the rounds. On a shared
machine claims/s swing with the neighbours; CPU per claim much less.

    python -m bench.presale_cost [--seconds 1.5] [--rounds 3] [--concurrency 256]
"""

import argparse
import statistics
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import uvloop
from rich.console import Console
from rich.table import Table

from bench import harness
from bench.engine_claims import _phases, _price_steps
from stampede import Engine, Outcome
from stampede.domain.engine import ClaimResult
from stampede.domain.models import CampaignSpec

console = Console()
TIERS = ("newsletter", "member")
STOCK = 50_000_000


def _spec(features: set[str]) -> CampaignSpec:
    """The plain campaign of bench.engine_claims with the named features on."""
    now = datetime.now(UTC)
    wave = [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": STOCK}]
    hot: dict[str, Any] = {"sku": "hot", "price": 100, "waves": wave}
    if "price steps" in features:
        hot["price_steps"] = _price_steps(now)
    if "allocations" in features:
        hot["allocations"] = [{"name": "app", "qty": STOCK // 2, "channels": ["app"]},
                              {"name": "members", "qty": STOCK // 4, "tiers": ["member"]}]
    skus = [hot]
    extra: dict[str, Any] = {}
    if "bundles" in features:
        skus.append({"sku": "tee", "price": 30, "waves": wave,
                     "price_steps": [{"price": 25, "first_units": 10}]})
        extra["bundles"] = {"fan": {"lines": [{"sku": "hot"}, {"sku": "tee"}]}}
    if "phases" in features:
        extra["phases"] = _phases(now)
    limits: dict[str, Any] = {"per_user": 2}
    if "per_person" in features:
        limits["per_person"] = 2
    return msgspec.convert({
        "name": "bench", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(), "limits": limits,
        "skus": skus, **extra}, CampaignSpec)


PRESALE = {"phases", "per_person", "allocations", "price steps"}
MODES: dict[str, tuple[set[str], str]] = {
    "plain": (set(), "single"),
    "+ phases (tiers)": ({"phases"}, "single"),
    "+ per_person": ({"per_person"}, "single"),
    "+ allocations": ({"allocations"}, "single"),
    "+ price steps": ({"price steps"}, "single"),
    "presale (all four)": (PRESALE, "single"),
    "presale, every claim a bundle": (PRESALE | {"bundles"}, "bundle"),
    "presale, every other claim a bundle": (PRESALE | {"bundles"}, "half"),
}
"""Mode -> (features, which claims: single tickets, bundles, or every other one a bundle)."""

Claim = Callable[[str, str], Awaitable[ClaimResult]]


def _claimer(engine: Engine, kind: str) -> Claim:
    async def single(cid: str, user: str) -> ClaimResult:
        return await engine.claim(cid, user, "hot", 1, tiers=TIERS, identity=f"h-{user}",
                                  channel="app")

    async def bundle(cid: str, user: str) -> ClaimResult:
        return await engine.claim_bundle(cid, user, bundle="fan", tiers=TIERS,
                                         identity=f"h-{user}", channel="app")

    async def half(cid: str, user: str) -> ClaimResult:
        return await (bundle if hash(user) & 1 else single)(cid, user)

    return {"single": single, "bundle": bundle, "half": half}[kind]


async def _valkey_cpu(engine: Engine) -> float:
    cpu = await engine.redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def run(seconds: float, rounds: int,
              concurrency: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(Valkey µs per claim, claims/s) of each mode, each round."""
    us: dict[str, list[float]] = {m: [] for m in MODES}
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    async with harness.fresh_engine() as engine:
        order = list(MODES.items())
        for r in range(rounds):  # each round starts one mode further: no mode always first
            for i, (mode, (features, kind)) in enumerate(order[r:] + order[:r]):
                console.log(f"round {r + 1}/{rounds}: {mode}")
                cid = f"cost{r}-{i}"
                await engine.define_campaign(cid, _spec(features))
                claim = _claimer(engine, kind)

                async def step(w: int, n: int) -> bool:
                    result = await claim(cid, f"w{w}-{n}")  # noqa: B023 (awaited here)
                    assert result.outcome is Outcome.OK, result
                    return True

                before = await _valkey_cpu(engine)
                done, rate = await harness.drive(seconds, concurrency, step)
                us[mode].append((await _valkey_cpu(engine) - before) / done * 1e6)
                rates[mode].append(rate)
                await harness.drop_campaign(engine, cid)
    return us, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    us, rates = uvloop.run(run(args.seconds, args.rounds, args.concurrency))
    plain = statistics.median(us["plain"])
    table = Table(title=f"Valkey CPU per claim by presale feature, concurrency "
                        f"{args.concurrency} (medians of {args.rounds} rounds)")
    for col in ("mode", "Valkey µs/claim", "over plain", "claims/s"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for mode in MODES:
        v = statistics.median(us[mode])
        table.add_row(mode, f"{v:.1f}", "-" if mode == "plain" else f"{v - plain:+.1f}",
                      f"{statistics.median(rates[mode]):,.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
