"""Coupon claims and redemptions per second (engine, no HTTP), beside sale claims.

One process, one embedded Valkey, modes interleaved round by round so that
machine drift hits all alike:

- sale claims, batched (one script call per loop tick) and one call per claim;
- coupon claims in a drop (one `coupon_claim` call each: final, issues a coupon);
- promo-code claims: the same drop's SKU claimed with a public code (the code
  resolved, its per-user count and the wrong-code limiter in the same script
  call), beside the plain coupon claims of the same round;
- the same in a drop guarded by every check of the scalper guard (bench.engine_claims
  GUARD), each claim from a new user, device and network, every one let through;
- paid vouchers: a claim of a SKU sold at a price (a hold) and its payment
  (`coupon_pay`: confirmed, coupon issued), one pair per step, beside the plain
  coupon claims of the same round (two script calls against one);
- redemptions of the coupons the claim round issued (code verification,
  pricing, `coupon_lookup` + `coupon_redeem`), each at a merchant with a
  fresh order.

After each round the accounting is checked (stock, coupons issued, redeemed).

    python -m bench.coupon_bench [--seconds 2] [--rounds 3] [--concurrency 256]
"""

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from rich.console import Console

from bench import harness
from bench.engine_claims import GUARD
from stampede import Engine, Outcome
from stampede.domain.coupons.service import Merchant
from stampede.domain.coupons.spec import MerchantSpec, RedemptionRequest
from stampede.domain.models import CampaignSpec
from stampede.domain.throttle import ClientSignals

console = Console()
STOCK = 50_000_000


PROMO = "BENCH25"


def _spec(drop: bool, guard: dict[str, Any] | None = None, promo: bool = False,
          paid: bool = False) -> CampaignSpec:
    now = datetime.now(UTC)
    raw: dict[str, object] = {**({"throttle": guard} if guard else {}),
        "name": "bench", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(), "limits": {"per_user": 2},
        "skus": [{"sku": "hot", "price": 100 if not drop or paid else 0,
                  "waves": [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": STOCK}]}]}
    if drop:
        raw["coupons"] = {"templates": {"hot": {"kind": "fixed_off", "face_value": 500,
                                                "valid_days": 30}},
                          "per_user_per_day": 2, "budget": STOCK * 500,
                          **({"promo_codes": {PROMO: {"sku": "hot", "per_user": 2}}}
                             if promo else {}), **({"paid": ["hot"]} if paid else {})}
    return msgspec.convert(raw, CampaignSpec)


async def _sale(engine: Engine, cid: str, batched: bool, seconds: float, n: int) -> float:
    await engine.define_campaign(cid, _spec(drop=False))
    claim = engine.claim if batched else engine.claim_unbatched

    async def step(w: int, i: int) -> bool:
        assert (await claim(cid, f"w{w}-{i}", "hot", 1)).outcome is Outcome.OK
        return True

    done, rate = await harness.drive(seconds, n, step)
    stats = await engine.stats(cid)
    assert stats and stats.skus[0].held == done, "sale accounting broken"
    return rate


async def _coupon_claims(engine: Engine, cid: str, seconds: float, n: int,
                         codes: list[str], guarded: bool = False, promo: bool = False) -> float:
    await engine.define_campaign(cid, _spec(drop=True, guard=GUARD if guarded else None,
                                            promo=promo))

    async def step(w: int, i: int) -> bool:
        user = f"w{w}-{i}"
        client = None
        if guarded:  # a new device and a spread of networks, as in bench.engine_claims
            h = hash(user) & 0xFFFFFF
            client = ClientSignals(device=f"dev-{user}",
                                   network=f"10.{h >> 16}.{h >> 8 & 255}.0/24",
                                   account_age_s=400 * 86_400)
        if promo:
            r = await engine.coupons.claim(cid, user, "", client=client, code=PROMO)
        else:
            r = await engine.coupons.claim(cid, user, "hot", client=client)
        assert r.outcome is Outcome.OK, r
        codes.append(r.view.coupons[0].code)
        return True

    done, rate = await harness.drive(seconds, n, step)
    stats = await engine.coupons.stats(cid)
    assert stats and stats.totals.issued == done, "coupon accounting broken"
    return rate


async def _paid_vouchers(engine: Engine, cid: str, seconds: float, n: int) -> float:
    """Paid vouchers: claim (a hold) then pay (coupons issued); one step is the pair."""
    await engine.define_campaign(cid, _spec(drop=True, paid=True))

    async def step(w: int, i: int) -> bool:
        user = f"w{w}-{i}"
        held = await engine.coupons.claim(cid, user, "hot")
        assert held.outcome is Outcome.OK and held.view.status == "held", held
        paid = await engine.coupons.paid.confirm(held.view.claim_id, user, f"pay-{user}")
        assert paid.outcome is Outcome.OK and len(paid.view.coupons) == 1, paid
        return True

    done, rate = await harness.drive(seconds, n, step)
    stats = await engine.coupons.stats(cid)
    assert stats and stats.totals.issued == done, "paid voucher accounting broken"
    return rate


async def _redemptions(engine: Engine, cid: str, merchant: Merchant, seconds: float, n: int,
                       codes: list[str]) -> float:
    it = iter(codes)

    async def step(w: int, i: int) -> bool:
        code = next(it, None)
        if code is None:
            return False
        r = await engine.coupons.redeem(merchant, RedemptionRequest(
            code=code, order_id=f"o{w}-{i}", order_amount=3000))
        assert r.outcome is Outcome.OK and r.view.discount == 500, r
        return True

    done, rate = await harness.drive(seconds, n, step)
    stats = await engine.coupons.stats(cid)
    assert stats and stats.totals.redeemed == done, "redemption accounting broken"
    if done == len(codes):
        console.log("[yellow]redemptions ran out of coupons: raise --seconds of the claims")
    return rate


async def _wipe(engine: Engine, cid: str) -> None:
    await engine.redis.delete(*[k for k in await engine.redis.keys(f"{{c:{cid}}}*")])


async def run(seconds: float, rounds: int, concurrency: int) -> dict[str, list[float]]:
    names = ("sale claims, batched", "sale claims, one call per claim", "coupon claims",
             "redemptions", "coupon claims + guard", "promo-code claims",
             "paid voucher claim+confirm")
    rates: dict[str, list[float]] = {m: [] for m in names}
    async with harness.fresh_engine() as engine:
        creds = await engine.coupons.put_merchant("bench", MerchantSpec(name="bench"))
        merchant = await engine.coupons.merchant(creds.token)
        assert merchant is not None
        for r in range(rounds):
            console.log(f"round {r + 1}/{rounds}")
            rates[names[0]].append(await _sale(engine, f"s{r}", True, seconds, concurrency))
            await _wipe(engine, f"s{r}")
            rates[names[1]].append(await _sale(engine, f"u{r}", False, seconds,
                                               concurrency))
            await _wipe(engine, f"u{r}")
            codes: list[str] = []
            rates[names[2]].append(await _coupon_claims(engine, f"d{r}", seconds,
                                                        concurrency, codes))
            # promo-code claims right after the plain ones: the drift hits both alike
            rates[names[5]].append(await _coupon_claims(engine, f"p{r}", seconds,
                                                        concurrency, [], promo=True))
            await _wipe(engine, f"p{r}")
            rates[names[6]].append(await _paid_vouchers(engine, f"v{r}", seconds,
                                                        concurrency))
            await _wipe(engine, f"v{r}")
            rates[names[3]].append(await _redemptions(engine, f"d{r}", merchant, seconds,
                                                      concurrency, codes))
            await _wipe(engine, f"d{r}")
            rates[names[4]].append(await _coupon_claims(engine, f"g{r}", seconds,
                                                        concurrency, [], guarded=True))
            await _wipe(engine, f"g{r}")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    rates = uvloop.run(run(args.seconds, args.rounds, args.concurrency))
    medians = harness.print_rounds(
        f"engine operations/s (no HTTP), concurrency {args.concurrency}",
        ("operation", "median /s", "rounds", "vs batched sale claims"), rates,
        "sale claims, batched")
    promo, plain = medians["promo-code claims"], medians["coupon claims"]
    console.print(f"promo-code claims / plain coupon claims: {promo / plain:.2f}")
    voucher = medians["paid voucher claim+confirm"]
    console.print(f"paid voucher claim+confirm pairs / plain coupon claims: "
                  f"{voucher / plain:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rates": rates, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
