"""Invariants under concurrency, against a real server.

Each test would fail on a broken implementation: an unchecked stock count
oversells, a limit read outside the script lets double-clicks through.
"""

import asyncio
import random
from collections import Counter

from redis.asyncio.cluster import RedisCluster

from stampede import Engine, Outcome, Settings
from stampede.state import keys, records
from tests.conftest import campaign_spec


async def _check_invariants(engine: Engine, cid: str, per_user: int | None) -> None:
    stats = await engine.stats(cid)
    assert stats is not None
    for s in stats.skus:
        assert s.available >= 0
        assert s.available + s.held + s.sold == s.released
    users = await engine.redis.hgetall(keys.campaign_keys(cid).users)
    if per_user is not None:
        totals = {u: sum(records.decode_units(n).values()) for u, n in users.items()
                  if "|" not in u}
        assert all(n <= per_user for n in totals.values())
    # Redis counters agree with the claim records they summarise.
    stored = await engine.redis.hgetall(keys.campaign_keys(cid).claims)
    held = Counter[str]()
    sold = Counter[str]()
    for raw in stored.values():
        c = records.CLAIM.decode(raw)
        if c.status == "held":
            held[c.sku] += c.qty
        elif c.status == "confirmed":
            sold[c.sku] += c.qty
    for s in stats.skus:
        assert (s.held, s.sold) == (held[s.sku], sold[s.sku])


async def test_thousands_of_claims_for_a_few_hundred_units(engine: Engine,
                                                           settings: Settings) -> None:
    await engine.define_campaign("rush", campaign_spec(stock=300, per_user=2))
    # Several engines = several connection pools and batchers interleaving.
    engines = [engine] + [await _clone(engine, settings) for _ in range(3)]
    try:
        calls = [engines[i % 4].claim("rush", f"user{i}", "tee", 1) for i in range(3000)]
        results = await asyncio.gather(*calls)
    finally:
        for e in engines[1:]:
            await e.close()
    outcomes = Counter(r.outcome for r in results)
    assert outcomes == {Outcome.OK: 300, Outcome.SOLD_OUT: 2700}
    assert len({r.claim.claim_id for r in results if r.claim}) == 300
    stats = await engine.stats("rush")
    assert stats and (stats.skus[0].held, stats.skus[0].available) == (300, 0)
    await _check_invariants(engine, "rush", 2)


async def test_unbatched_concurrent_claims_do_not_oversell(engine: Engine) -> None:
    await engine.define_campaign("rush", campaign_spec(stock=150, per_user=3))
    calls = [engine.claim_unbatched("rush", f"user{i % 400}", "tee", random.randint(1, 3))
             for i in range(1200)]
    results = await asyncio.gather(*calls)
    held = sum(r.claim.qty for r in results if r.claim)
    stats = await engine.stats("rush")
    assert stats and stats.skus[0].held == held <= 150
    assert stats.skus[0].available == 150 - held
    await _check_invariants(engine, "rush", 3)


async def test_double_clicks_never_pass_the_per_user_limit(engine: Engine) -> None:
    await engine.define_campaign("rush", campaign_spec(stock=10_000, per_user=2))
    calls = [engine.claim("rush", f"user{u}", "tee", 1) for u in range(200) for _ in range(5)]
    random.shuffle(calls)
    results = await asyncio.gather(*calls)
    outcomes = Counter(r.outcome for r in results)
    assert outcomes == {Outcome.OK: 400, Outcome.LIMIT_EXCEEDED: 600}
    await _check_invariants(engine, "rush", 2)


async def test_per_sku_limit_under_parallel_claims(engine: Engine) -> None:
    spec = campaign_spec(stock=1000, per_user=6, skus=("a", "b"))
    await engine.define_campaign("rush", spec)
    from stampede.domain.models import CampaignPatch

    await engine.patch_campaign("rush", CampaignPatch(sku_limits={"a": 1}), "ops")
    calls = [engine.claim("rush", f"u{u}", sku, 1) for u in range(50) for sku in "aaabbb"]
    results = await asyncio.gather(*calls)
    by_sku = Counter(r.claim.sku for r in results if r.claim)
    assert by_sku == {"a": 50, "b": 150}


async def test_mixed_lifecycle_keeps_accounting_exact(engine: Engine) -> None:
    await engine.define_campaign("rush", campaign_spec(stock=200, per_user=3, hold_ttl_s=60))
    rng = random.Random(7)

    async def shopper(u: int) -> None:
        for _ in range(4):
            r = await engine.claim("rush", f"u{u}", "tee", rng.randint(1, 2))
            if r.claim:
                action = rng.random()
                if action < 0.4:
                    await engine.confirm(r.claim.claim_id, f"u{u}")
                elif action < 0.8:
                    await engine.cancel(r.claim.claim_id, f"u{u}")

    async def ops() -> None:
        for _ in range(10):
            await engine.adjust_stock("rush", "tee", rng.randint(1, 5), "ops")
            await engine.sweep("rush")
            await asyncio.sleep(0)

    await asyncio.gather(*(shopper(u) for u in range(300)), ops())
    await _check_invariants(engine, "rush", 3)
    await engine.set_clock_offset("rush", 61_000)
    await engine.sweep("rush")
    stats = await engine.stats("rush")
    assert stats and stats.skus[0].held == 0
    await _check_invariants(engine, "rush", 3)


async def test_claims_coalesce_into_few_round_trips(engine: Engine) -> None:
    await engine.define_campaign("rush", campaign_spec(stock=1000, per_user=None))
    before = engine.batcher.batches_sent
    await asyncio.gather(*(engine.claim("rush", f"u{i}", "tee") for i in range(500)))
    # two batches of EAGER_BATCH leave as they fill (Valkey starts on them while the
    # tick goes on), the rest together when one of them is back
    assert engine.batcher.batches_sent - before <= 3


async def _clone(engine: Engine, settings: Settings) -> Engine:
    if isinstance(engine.redis, RedisCluster):  # tests/cluster runs these tests too
        node = engine.redis.get_default_node()
        url = f"redis://{node.host}:{node.port}/0"
    else:
        kwargs = engine.redis.connection_pool.connection_kwargs
        url = f"unix://{kwargs['path']}" if "path" in kwargs else \
            f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    other = Engine.from_url(url, settings)
    await other.start()
    return other
