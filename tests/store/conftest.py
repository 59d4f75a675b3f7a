"""Store fixtures: every store test runs on a real SQLite file and a real PostgreSQL."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stampede import Engine, Settings
from stampede.durable.persister import Persister
from stampede.durable.store import Store
from tests.pg import NO_PG, fresh_database, pg_server


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str | None]:
    with pg_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path,
                    pg_server_url: str | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if pg_server_url is None:
        pytest.skip(NO_PG)
    return await fresh_database(pg_server_url)


@pytest.fixture
def store_settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(data_dir=tmp_path, store_url=store_url, persist_batch=200,
                    persist_claim_idle_ms=200, persist_max_attempts=3)


@pytest.fixture
async def raw_redis(clean_redis: str) -> AsyncIterator["Redis[str]"]:
    client: Redis[str] = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def sale(clean_redis: str, store_settings: Settings) -> AsyncIterator[Engine]:
    eng = Engine.from_url(clean_redis, store_settings)
    await eng.start()
    yield eng
    await eng.close()


@pytest.fixture
def persister(raw_redis: "Redis[str]", store: Store, store_settings: Settings) -> Persister:
    return Persister(raw_redis, store, store_settings, consumer="test")
