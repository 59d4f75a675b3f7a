"""Shared checks and rigs for the store tests."""

import functools
from typing import Any

from aiohttp import web
from sqlalchemy import select

from stampede import Engine
from stampede.api.app import make_public_app
from stampede.api.auth import Authenticator
from stampede.api.healing import IN_STORE
from stampede.durable.recovery import in_store
from stampede.durable.store import Store
from stampede.durable.store import schema as t


async def store_rows(store: Store, table: Any, cid: str) -> list[Any]:
    async with store.engine.connect() as conn:
        return list(await conn.execute(select(table).where(table.c.campaign_id == cid)))


async def assert_store_matches_redis(engine: Engine, store: Store, cid: str) -> None:
    """SKU counters and every claim's status are the same in Redis and the store."""
    stats = await engine.stats(cid)
    assert stats is not None
    skus = {r.sku: r for r in await store_rows(store, t.skus, cid)}
    for s in stats.skus:
        row = skus[s.sku]
        assert (row.available, row.held, row.sold, row.released) == \
            (s.available, s.held, s.sold, s.released), s.sku
    raw = await engine.redis.hgetall(f"{{c:{cid}}}:claims")
    redis_status = {k: v.split("|", 1)[0] for k, v in raw.items()}
    stored = {r.claim_id: r.status for r in await store_rows(store, t.claims, cid)}
    assert stored == redis_status
    camp = (await store_rows(store, t.campaigns, cid))[0]
    assert camp.applied_seq == stats.events


def healing_public_app(engine: Engine, store: Store, *inner: Any) -> web.Application:
    """The public app (dev auth) that asks `store` about lost campaigns, with `inner`
    middlewares innermost: right after the handler, before the healing middleware."""
    app = make_public_app(engine, Authenticator("s" * 32, True, ()), {"draining": False})
    app[IN_STORE] = functools.partial(in_store, store)
    app.middlewares.extend(inner)
    return app
