"""How long Redis is blocked by a validity extension of a large coupon drop.

A live change that lengthens a template's validity must reach every coupon
already issued. The baseline is the way it used to be done: one script over the
whole drop (HGETALL, then every coupon rewritten), beside today's way
(`coupon_patch.lua` queues it, `coupon_extend.lua` applies it in bounded HSCAN
batches, `Coupons.extend_validity` calls it until done). Both extend the same
N coupons (the baseline to 3 days, then ours to 5), on one embedded Valkey.

The longest script call is Valkey's own figure (SLOWLOG, microseconds, of
calls over 1 ms: logging every command would slow the scripts themselves, as
Valkey also logs the commands a script runs); it is how long every other
client of that Redis waited at worst. The median and 99th percentile are
measured round trips of the batches (the engine's script observer).

The drop's coupons are written straight into its hash (copies of one granted
coupon under N ids), so setting up a million takes seconds, not a sale.

    python -m bench.coupon_extend_bench [--coupons 50000] [--batch 200] [--no-baseline]
"""

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import uvloop
from redis.asyncio import Redis

from bench import harness
from stampede import Engine
from stampede.domain.coupons.spec import CouponDropPatch
from stampede.domain.models import CampaignSpec
from stampede.state import keys
from stampede.state.scripts import render_text

FILL_CHUNK = 10_000
BASELINE = """--@include common
--@include coupons
-- The extension as one script over every coupon (coupon_patch.lua before batches).
local grow, now, extended = cjson.decode(ARGV[1]), now_ms(), 0
local all = redis.call('HGETALL', C.cpn)
for i = 1, #all, 2 do
  local c = parse_coupon(all[i + 1])
  local g = grow[c.tpl]
  if g and c.status == 'active' and now < c.vt then
    local vt = math.max(c.vt, c.vf + g.vd * DAY_MS)
    if vt > c.vt then
      c.vt = vt
      redis.call('HSET', C.cpn, all[i], format_coupon(c))
      redis.call('ZADD', C.cexp, vt, all[i])
      extended = extended + 1
    end
  end
end
return extended
"""


def _drop(n: int) -> Any:
    """A free coupon drop of one template valid for a day."""
    now = datetime.now(UTC)
    return msgspec.convert({
        "name": "big", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(), "limits": {"max_per_claim": 10},
        "skus": [{"sku": "day", "price": 0,
                  "waves": [{"at": (now - timedelta(seconds=30)).isoformat(), "qty": n + 10}]}],
        "coupons": {"templates": {"day": {"kind": "fixed_off", "face_value": 500,
                                          "valid_days": 1}}}}, CampaignSpec)


async def _fill(engine: Engine, n: int) -> None:
    """N active coupons of template `day`: copies of one granted coupon."""
    granted = await engine.grants.grant("big", "day", ["seed"], "seed", "ops:bench")
    assert granted[0].outcome == "granted", granted
    drop = keys.coupon_keys("big").drop
    (seed_id, record), = (await engine.redis.hgetall(drop.cpn)).items()
    vt = int((await engine.redis.zscore(drop.cexp, seed_id)) or 0)
    for start in range(0, n, FILL_CHUNK):
        ids = [f"big.{i:024x}" for i in range(start, min(n, start + FILL_CHUNK))]
        async with engine.redis.pipeline(transaction=False) as pipe:
            pipe.hset(drop.cpn, mapping=dict.fromkeys(ids, record))
            pipe.zadd(drop.cexp, dict.fromkeys(ids, vt))
            await pipe.execute()


async def _slowlog(engine: Engine) -> list[int]:
    """Durations (µs) of the script calls since the last reset."""
    entries = await engine.redis.slowlog_get(100_000)
    return [int(e["duration"]) for e in entries
            if bytes(e["command"]).split(b" ", 1)[0].upper() in (b"EVAL", b"EVALSHA")]


async def main(coupons: int, batch: int, baseline: bool = True) -> dict[str, float]:
    async with harness.fresh_engine() as engine:
        await engine.define_campaign("big", _drop(coupons))
        t0 = time.perf_counter()
        await _fill(engine, coupons)
        print(f"{coupons + 1:,} coupons written in {time.perf_counter() - t0:.1f} s")
        await engine.redis.config_set("slowlog-log-slower-than", 1000)
        await engine.redis.config_set("slowlog-max-len", 100_000)
        trips: list[float] = []
        engine.scripts.observer = lambda name, s: trips.append(s) if name == "coupon_extend" \
            else None

        base, base_wall = [0], 0.0
        if baseline:
            base, base_wall = await _baseline(engine, coupons)
        await engine.redis.slowlog_reset()
        t0 = time.perf_counter()
        patch = msgspec.convert({"templates": {"day": {"valid_days": 5}}}, CouponDropPatch)
        answer = await engine.coupons.patch_drop("big", patch, "bench")
        ours_wall = time.perf_counter() - t0
        ours = await _slowlog(engine)
        assert answer.view is not None and answer.view.coupons_extended == coupons + 1, answer
        if baseline:
            print(f"one script (baseline): longest call {max(base) / 1000:,.1f} ms, "
                  f"{len(base)} call(s), {base_wall:.2f} s in all")
        trips.sort()
        median, p99 = trips[len(trips) // 2] * 1000, trips[len(trips) * 99 // 100] * 1000
        print(f"batches of {batch} (ours): longest call {max(ours, default=0) / 1000:,.1f} ms "
              f"in Valkey; {len(trips)} calls, round trip median {median:.2f} ms, "
              f"99th percentile {p99:.2f} ms, {ours_wall:.2f} s in all")
        if not baseline:
            return {"ours_max_ms": max(ours, default=0) / 1000}
        ratio = max(base) / max(ours, default=1)
        print(f"longest Redis block: {ratio:,.0f}x shorter; whole extension "
              f"{ours_wall / base_wall:.2f}x the baseline's time")
        return {"baseline_max_ms": max(base) / 1000, "ours_max_ms": max(ours, default=0) / 1000,
                "ratio": ratio}


async def _baseline(engine: Engine, coupons: int) -> tuple[list[int], float]:
    """The one big script (to 3 days): its duration(s) and wall time."""
    await engine.redis.slowlog_reset()
    # (its own client: the engine's read timeout is shorter than the one big script)
    unbounded = Redis(unix_socket_path=engine.redis.connection_pool.connection_kwargs["path"])
    t0 = time.perf_counter()
    extended = await unbounded.eval(render_text(BASELINE), len(list(
        keys.coupon_keys("big"))), *keys.coupon_keys("big"), '{"day": {"vt": -1, "vd": 3}}')
    base_wall = time.perf_counter() - t0
    await unbounded.aclose()
    base = await _slowlog(engine)
    assert int(extended) == coupons + 1, extended
    return base, base_wall


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coupons", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the one big script (past ~100,000 coupons it runs longer "
                             "than Valkey's 5 s busy threshold and other clients get BUSY)")
    args = parser.parse_args()
    from stampede.domain.coupons import service
    service.EXTEND_BATCH = args.batch
    harness.sigterm_as_exit()
    uvloop.run(main(args.coupons, args.batch, not args.no_baseline))
