"""Fixtures: a real Valkey for the session (never a mock), clean per test.

The session starts its own server on its own data directory, or uses
STAMPEDE_TEST_REDIS_URL (a server whose data the tests may flush).
"""

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stampede import Engine, Settings
from stampede.domain.models import CampaignSpec
from stampede.durable.store import Store, open_store
from stampede.runtime.valkey import EmbeddedValkey


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("STAMPEDE_TEST_REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="stampede-test-") as tmp:
        server = EmbeddedValkey(Path(tmp))
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    return redis_url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, sweep_batch=500)


@pytest.fixture
async def engine(clean_redis: str, settings: Settings) -> AsyncIterator[Engine]:
    eng = Engine.from_url(clean_redis, settings)
    await eng.start()
    yield eng
    await eng.close()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The durable store at `store_url` (tests/store and tests/cluster define it)."""
    s = await open_store(store_url)
    yield s
    await s.close()


def iso(delta_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


def campaign_spec(stock: int = 100, per_user: int | None = 2, hold_ttl_s: int = 600,
                  skus: tuple[str, ...] = ("tee",), opens_in_s: float = -60,
                  waves: list[dict[str, Any]] | None = None, **extra: Any) -> CampaignSpec:
    """An open campaign whose SKUs each get `stock` units now (or the given waves)."""
    limits: dict[str, Any] = {"max_per_claim": 10}
    if per_user is not None:
        limits["per_user"] = per_user
    sku_specs = [{"sku": s, "price": 1999,
                  "waves": waves if waves is not None else [{"at": iso(-30), "qty": stock}]}
                 for s in skus]
    raw = {"name": "test sale", "opens_at": iso(opens_in_s),
           "closes_at": iso(max(opens_in_s, 0) + 3600),
           "hold_ttl_s": hold_ttl_s, "limits": limits, "skus": sku_specs, **extra}
    return msgspec.convert(raw, CampaignSpec)


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A test client of `app` on a real socket, closed after."""
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
