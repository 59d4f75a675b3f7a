"""Coupon rules throughput (engine, no HTTP): cart redemptions beside today's
single-amount redemption, qualification of a 50-coupon wallet, and a live
validity extension over a drop's issued coupons.

One process, one embedded Valkey, modes interleaved round by round so that
machine drift hits all alike; each round:

- single-amount redemptions of an unscoped template (the baseline: today's path);
- redemptions with a 10-line cart of a category-scoped 满3000减500 template that
  also has lunch-style hours (open all day here, so every one succeeds): scope,
  threshold on the qualifying lines, the per-line split, the compiled windows
  and the revision check;
- qualification queries (`qualify`) of 50-coupon wallets (mixed templates) on a
  10-line cart;
- a live change extending the validity of N issued coupons (in bounded batches:
  bench/coupon_extend_bench.py measures the longest call), reported in coupons
  rewritten per second.

Accounting is checked after each mode (redemptions counted, discounts exact).

    python -m bench.coupon_rules_bench [--seconds 2] [--rounds 3] [--concurrency 64]
"""

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import uvloop
from rich.console import Console

from bench import harness
from stampede import Engine, Outcome
from stampede.domain.coupons.service import Merchant
from stampede.domain.coupons.spec import (
    CartLine,
    CouponDropPatch,
    MerchantSpec,
    RedemptionRequest,
)
from stampede.domain.models import CampaignSpec

console = Console()
STOCK = 10_000_000
WALLET = 50
TEMPLATES = {
    "plain": {"kind": "fixed_off", "face_value": 500, "valid_days": 30},
    "drinks": {"kind": "threshold_off", "face_value": 500, "threshold": 3000,
               "valid_days": 30, "categories": ["drinks"], "exclude_items": ["gift"],
               "hours": [{"start": "00:00", "end": "24:00"}]},
    "latte": {"kind": "percent_off", "face_value": 900, "percent": 20, "valid_days": 30,
              "items": ["latte"], "min_qty": 2},
    "food": {"kind": "fixed_off", "face_value": 200, "valid_days": 30, "categories": ["food"]},
    "lunch": {"kind": "fixed_off", "face_value": 300, "valid_days": 30,
              "hours": [{"start": "11:30", "end": "14:00"}]},
}
CART = [CartLine(item=f"{'latte' if i % 3 == 0 else 'mocha'}" if i < 6 else f"cake{i}",
                 category="drinks" if i < 6 else "food", qty=1 + i % 2, amount=700 + 10 * i)
        for i in range(10)]


def _spec() -> CampaignSpec:
    now = datetime.now(UTC)
    return msgspec.convert({
        "name": "bench", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(),
        "limits": {"per_user": 1000, "max_per_claim": 100},
        "skus": [{"sku": t, "price": 0,
                  "waves": [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": STOCK}]}
                 for t in TEMPLATES],
        "coupons": {"templates": TEMPLATES, "time_zone": "Asia/Shanghai"}}, CampaignSpec)


async def _issue(engine: Engine, cid: str, tid: str, n: int, user: str) -> list[str]:
    codes: list[str] = []
    while len(codes) < n:
        # a new holder every 1000 (the campaign's per-user limit)
        r = await engine.coupons.claim(cid, f"{user}{len(codes) // 1000 or ''}", tid,
                                       min(100, n - len(codes)))
        assert r.outcome is Outcome.OK, r
        codes += [str(c.code) for c in r.view.coupons]
    return codes


async def _redeem(engine: Engine, cid: str, merchant: Merchant, seconds: float, n: int,
                  tid: str, cart: bool, codes: list[str]) -> float:
    it = iter(codes)
    before = (await engine.coupons.stats(cid)).totals.redeemed  # type: ignore[union-attr]

    async def step(w: int, i: int) -> bool:
        code = next(it, None)
        if code is None:
            return False
        req = RedemptionRequest(code=code, order_id=f"{tid}{w}-{i}",
                                lines=CART if cart else None,
                                order_amount=None if cart else 3000)
        r = await engine.coupons.redeem(merchant, req)
        assert r.outcome is Outcome.OK and r.view.discount == 500, r
        assert not cart or sum(x.discount for x in r.view.lines) == 500
        return True

    done, rate = await harness.drive(seconds, n, step)
    stats = await engine.coupons.stats(cid)
    assert stats and stats.totals.redeemed - before == done, "redemption accounting broken"
    if done == len(codes):
        console.log(f"[yellow]{tid}: ran out of coupons; figures understate")
    return rate


async def _qualify(engine: Engine, seconds: float, n: int, users: list[str]) -> float:
    async def step(w: int, i: int) -> bool:
        view = await engine.coupons.qualify(users[(w + i) % len(users)], CART)
        assert len(view.coupons) == WALLET
        return True

    return (await harness.drive(seconds, n, step))[1]


async def _extend(engine: Engine, cid: str, days: int) -> tuple[int, float]:
    started = time.perf_counter()
    a = await engine.coupons.patch_drop(cid, msgspec.convert(
        {"templates": {"plain": {"valid_days": days}}}, CouponDropPatch), "bench")
    took = time.perf_counter() - started
    assert a.outcome is Outcome.OK
    return a.view.coupons_extended, a.view.coupons_extended / took


async def run(seconds: float, rounds: int, concurrency: int) -> dict[str, list[float]]:
    names = ("redemptions, single amount", "redemptions, 10-line cart",
             "qualify, wallet of 50", "validity extended, coupons/s")
    rates: dict[str, list[float]] = {m: [] for m in names}
    async with harness.fresh_engine() as engine:
        creds = await engine.coupons.put_merchant("bench", MerchantSpec(name="bench"))
        merchant = await engine.coupons.merchant(creds.token)
        assert merchant is not None
        # a rough supply: the single-amount path is the faster
        supply = int(seconds * 6000) + 1000
        for r in range(rounds):
            console.log(f"round {r + 1}/{rounds}")
            cid = f"r{r}"
            await engine.define_campaign(cid, _spec())
            plain = await _issue(engine, cid, "plain", supply, "bench-plain")
            drinks = await _issue(engine, cid, "drinks", supply, "bench-drinks")
            users = [f"w{u}" for u in range(20)]
            for u in users:  # 50 coupons each: 10 of every template
                for tid in TEMPLATES:
                    await _issue(engine, cid, tid, WALLET // len(TEMPLATES), u)
            rates[names[0]].append(await _redeem(engine, cid, merchant, seconds, concurrency,
                                                 "plain", False, plain))
            rates[names[1]].append(await _redeem(engine, cid, merchant, seconds, concurrency,
                                                 "drinks", True, drinks))
            rates[names[2]].append(await _qualify(engine, seconds, concurrency, users))
            extended, per_s = await _extend(engine, cid, 40 + r)
            console.log(f"one live change extended {extended} coupons")
            rates[names[3]].append(per_s)
            await engine.redis.delete(*[k for k in await engine.redis.keys(f"{{c:{cid}}}*")])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    rates = uvloop.run(run(args.seconds, args.rounds, args.concurrency))
    medians = harness.print_rounds(
        f"coupon rules, engine operations/s (no HTTP), concurrency {args.concurrency}",
        ("operation", "median /s", "rounds", "vs single-amount redemptions"), rates,
        "redemptions, single amount")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
