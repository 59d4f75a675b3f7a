"""Gauges read back from Redis on a housekeeping tick: stock, holds, coupon value.

Each refresh is a small function in `REFRESHES`; `serve` runs them all every
`INTERVAL_S` in the worker that does housekeeping.
"""

from collections.abc import Awaitable, Callable
from typing import cast

from stampede import Engine
from stampede.metrics import COUPON_VALUE, HOLDS, STOCK
from stampede.state import keys

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


REFRESHES: tuple[Callable[[Engine], Awaitable[None]], ...] = (refresh_stock,
                                                               refresh_coupon_value)


async def refresh_gauges(engine: Engine) -> None:
    for refresh in REFRESHES:
        await refresh(engine)
