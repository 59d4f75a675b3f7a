"""Heal, reconcile, the lag check and the health pings only read: on SQLite they read a
WAL snapshot and never queue for the write lock the persister holds while it commits."""

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.durable.lagcheck import compare
from stampede.durable.persister import Persister
from stampede.durable.reconcile import reconcile
from stampede.durable.recovery import heal, in_store
from stampede.durable.store import Store
from tests.conftest import campaign_spec

READ_WAIT_S = 20.0
"""Generous for a loaded machine; a read that queued for the lock would wait the
store's busy timeout (60 s) while the writer below holds it."""


@pytest.fixture
def writer(store: Store) -> Iterator[sqlite3.Connection]:
    """Another process's writer in the middle of a transaction: the write lock, held."""
    if not store.is_sqlite:
        pytest.skip("SQLite's write lock")
    conn = sqlite3.connect(Path(store.url.split(":///", 1)[1]), isolation_level=None)
    yield conn
    conn.close()


async def test_reads_never_wait_for_the_writer(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        writer: sqlite3.Connection) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5))
    assert (await sale.claim("c1", "u1", "tee")).outcome is Outcome.OK
    await persister.drain()
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE campaigns SET max_seq = max_seq WHERE campaign_id = 'c1'")
    reads: dict[str, Callable[[], Awaitable[object]]] = {
        "heal": lambda: heal(raw_redis, store, 60_000),
        "reconcile": lambda: reconcile(raw_redis, store),
        "lag check": lambda: compare(raw_redis, store, max_lag_s=60),
        "in_store": lambda: in_store(store, "c1"),
        "store ping": store.ping,
        "persister's health check": persister.store_healthy,
    }
    try:
        for name, read in reads.items():
            try:
                result = await asyncio.wait_for(read(), READ_WAIT_S)
            except TimeoutError:
                pytest.fail(f"{name} waited for the write lock")
            assert result is not False, name  # (the pings: False when they failed)
        assert await heal(raw_redis, store, 60_000) == []  # nothing was behind
        assert await in_store(store, "c1")
    finally:
        writer.execute("ROLLBACK")
