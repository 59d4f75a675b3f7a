"""The persister through outages of Redis: it never stalls, never blames an entry."""

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from stampede import Engine, Outcome, Settings
from stampede.durable.persister import Persister
from stampede.durable.store import Store, open_store
from stampede.durable.store import schema as t
from stampede.runtime.valkey import EmbeddedValkey
from tests.conftest import campaign_spec
from tests.store.helpers import store_rows


async def _failed_read() -> list[tuple[str, str, dict[str, str]]]:
    raise RedisConnectionError("Connection closed by server.")


async def test_a_failed_read_ahead_raises_once_not_forever(
        sale: Engine, persister: Persister, store: Store) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5))
    await persister.refresh_streams()
    persister._prefetch = asyncio.create_task(_failed_read())
    with pytest.raises(RedisConnectionError):
        await persister.step()
    assert await persister.step() > 0  # the next round reads again
    assert (await store_rows(store, t.campaigns, "c1"))[0].applied_seq >= 1


@pytest.fixture
async def own_valkey(tmp_path: Path) -> AsyncIterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "own")
    server.start()
    yield server
    server.stop()


async def _claims(engine: Engine, cid: str, users: range) -> list[str]:
    held = []
    for i in users:
        r = await engine.claim(cid, f"u{i}", "tee", idempotency_key=f"k{i}")
        assert r.outcome is Outcome.OK and r.claim
        held.append(r.claim.claim_id)
        if i % 3 == 0:
            assert (await engine.confirm(r.claim.claim_id, f"u{i}")).outcome is Outcome.OK
    return held


async def _stored(store: Store, cid: str) -> set[str]:
    return {r.claim_id for r in await store_rows(store, t.claims, cid)}


async def test_persister_catches_up_after_valkey_is_killed_and_restarted(
        own_valkey: EmbeddedValkey, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, persist_batch=50, persist_claim_idle_ms=500,
                        persist_max_attempts=2)
    store = await open_store(f"sqlite:///{tmp_path / 'store.db'}")
    engine = Engine.from_url(own_valkey.url, settings)
    await engine.start()
    redis = Redis.from_url(own_valkey.url, decode_responses=True)
    persister = Persister(redis, store, settings, consumer="p")
    stop = asyncio.Event()
    run = asyncio.create_task(persister.run(stop))
    try:
        await engine.define_campaign("c1", campaign_spec(stock=500, per_user=5))
        before = await _claims(engine, "c1", range(60))
        await asyncio.sleep(1.5)  # past appendfsync everysec: these are on disk
        assert own_valkey.process is not None
        os.kill(own_valkey.process.pid, signal.SIGKILL)
        await asyncio.sleep(1.0)  # the persister's reads and acks fail meanwhile
        own_valkey.restart()
        after = await _claims(engine, "c1", range(60, 120))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and await _stored(store, "c1") < {*before, *after}:
            await asyncio.sleep(0.2)
        assert await _stored(store, "c1") >= {*before, *after}
        assert persister.outages > 0
        assert await store_rows(store, t.dead_letters, "c1") == []
    finally:
        stop.set()
        await run
        await engine.close()
        await redis.aclose()
        await store.close()


async def test_a_persister_started_while_valkey_is_down_waits_for_it(
        own_valkey: EmbeddedValkey, tmp_path: Path) -> None:
    """Its first read of the campaign index fails: it waits and retries (it used to
    end its run there, leaving a process that persisted nothing)."""
    settings = Settings(data_dir=tmp_path, persist_batch=50)
    store = await open_store(f"sqlite:///{tmp_path / 'store.db'}")
    assert own_valkey.process is not None
    os.kill(own_valkey.process.pid, signal.SIGKILL)
    redis = Redis.from_url(own_valkey.url, decode_responses=True)
    persister = Persister(redis, store, settings, consumer="p")
    stop = asyncio.Event()
    run = asyncio.create_task(persister.run(stop))
    engine = None
    try:
        await asyncio.sleep(0.5)
        assert not run.done(), "the run ended while Redis was down"
        own_valkey.restart()
        engine = Engine.from_url(own_valkey.url, settings)
        await engine.start()
        await engine.define_campaign("c1", campaign_spec(stock=50, per_user=5))
        held = await _claims(engine, "c1", range(10))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and await _stored(store, "c1") < set(held):
            await asyncio.sleep(0.2)
        assert await _stored(store, "c1") >= set(held)
    finally:
        stop.set()
        await run
        if engine is not None:
            await engine.close()
        await redis.aclose()
        await store.close()
