"""Gauges read back on a housekeeping tick: stock, holds, coupon value and Redis
memory from Redis; expired holds from the store.

Each refresh is a small function in `REFRESHES`; `serve` runs them all every
`INTERVAL_S` in the worker that does housekeeping.
"""

from collections.abc import Awaitable, Callable
from typing import cast

from sqlalchemy import func, select

from stampede import Engine
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.metrics import (
    COUPON_VALUE,
    HOLDS,
    HOLDS_EXPIRED,
    REDIS_MEMORY_MAX,
    REDIS_MEMORY_USED,
    STOCK,
)
from stampede.state import keys
from stampede.state.connection import memory_info

INTERVAL_S = 2.0


async def refresh_stock(engine: Engine) -> None:
    """Stock and holds per campaign and SKU."""
    for cid in await engine.campaign_ids():
        stats = await engine.stats(cid)
        if stats is None:
            continue
        for s in stats.skus:
            for state, value in (("available", s.available), ("held", s.held),
                                 ("sold", s.sold), ("released", s.released)):
                STOCK.labels(cid, s.sku, state).set(value)
        HOLDS.labels(cid).set(sum(s.held for s in stats.skus))


async def refresh_coupon_value(engine: Engine) -> None:
    """Budget watch for ops: each drop's value issued against discount granted."""
    for cid in sorted(cast(set[str], await engine.redis.smembers(keys.COUPON_DROPS))):
        stats = await engine.coupons.stats(cid)
        if stats is None:
            continue
        t = stats.totals
        for kind, value in (("issued", t.face_value_issued),
                            ("discount", t.discount_granted - t.discount_rolled_back),
                            ("budget_left", -1 if stats.budget_left is None
                             else stats.budget_left)):
            COUPON_VALUE.labels(cid, kind).set(value)


async def refresh_redis_memory(engine: Engine) -> None:
    """For the memory-near-its-limit alert: a full Redis refuses every write."""
    info = await memory_info(engine.redis)
    REDIS_MEMORY_USED.set(int(info.get("used_memory", 0)))
    REDIS_MEMORY_MAX.set(int(info.get("maxmemory", 0)))


REFRESHES: tuple[Callable[[Engine], Awaitable[None]], ...] = (refresh_stock,
                                                               refresh_coupon_value,
                                                               refresh_redis_memory)


async def refresh_store_gauges(store: Store) -> None:
    """Expired hold units per campaign from the store's projection (Redis keeps no
    such counter), for the hold-expiry spike alert."""
    async with store.read() as conn:  # a snapshot: never the persister's write lock
        rows = (await conn.execute(select(t.skus.c.campaign_id, func.sum(t.skus.c.expired))
                                   .group_by(t.skus.c.campaign_id))).all()
    for cid, expired in rows:
        HOLDS_EXPIRED.labels(cid).set(int(expired or 0))


async def refresh_gauges(engine: Engine) -> None:
    for refresh in REFRESHES:
        await refresh(engine)
