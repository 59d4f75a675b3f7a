"""Durability under abuse: a persister killed with SIGKILL mid-sale, Redis emptied mid-sale.

The persister and `recover` run as real `stampede` processes; the sale runs
through the engine in this process (no HTTP: the load must be heavy, and
the subject here is the store, not the gateway).
"""

import asyncio
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from stampede import Engine, Outcome, Settings
from stampede.durable.reconcile import reconcile
from stampede.durable.store import open_store
from stampede.durable.store import schema as t
from tests.conftest import campaign_spec
from tests.store.conftest import pg_server_url, store_url  # noqa: F401 (fixtures)
from tests.store.helpers import assert_store_matches_redis
from tests.system.service import STAMPEDE

KILLS = 6


def _env(tmp: Path, redis_url: str, store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env.update(STAMPEDE_REDIS_URL=redis_url, STAMPEDE_STORE_URL=store,
               STAMPEDE_DATA_DIR=str(tmp), STAMPEDE_PERSIST_CLAIM_IDLE_MS="300",
               STAMPEDE_PERSIST_BATCH="200")
    return env


def _persister(env: dict[str, str], tmp: Path) -> "subprocess.Popen[bytes]":
    with (tmp / "persist.log").open("ab") as log:
        return subprocess.Popen([STAMPEDE, "persist"], env=env, stdout=log, stderr=log)


def _run(env: dict[str, str], *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([STAMPEDE, *args], env=env, capture_output=True, text=True,
                          timeout=120)


class Sale:
    """Buyers that claim, then confirm or cancel some; remembers what Redis acknowledged."""

    def __init__(self, engine: Engine, cid: str) -> None:
        self.engine, self.cid = engine, cid
        self.acknowledged: set[str] = set()
        self.stop = asyncio.Event()
        self.rng = random.Random(3)

    async def buyer(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            user = f"b{n}-{i % 40}"
            i += 1
            r = await self.engine.claim(self.cid, user, "tee")
            if r.outcome is Outcome.OK and r.claim:
                self.acknowledged.add(r.claim.claim_id)
                roll = self.rng.random()
                if roll < 0.5:
                    await self.engine.confirm(r.claim.claim_id, user)
                elif roll < 0.75:
                    await self.engine.cancel(r.claim.claim_id, user)
            elif r.outcome is not Outcome.OK:
                await asyncio.sleep(0.005)

    def start(self, buyers: int = 32) -> "asyncio.Future[list[None]]":
        self.stop.clear()
        return asyncio.gather(*(self.buyer(n) for n in range(buyers)))


async def _check(engine: Engine, env: dict[str, str], store_url_: str, cid: str,
                 acknowledged: set[str]) -> None:
    drained = _run(env, "persist", "--drain")
    assert drained.returncode == 0, drained.stderr[-2000:]
    audit = _run(env, "audit")
    assert audit.returncode == 0, audit.stdout[-3000:]
    store = await open_store(store_url_)
    try:
        async with store.engine.connect() as conn:
            stored = {r[0] for r in await conn.execute(select(t.claims.c.claim_id))}
            dup = (await conn.execute(
                select(t.claim_history.c.claim_id).where(t.claim_history.c.status == "held")
                .group_by(t.claim_history.c.claim_id).having(func.count() > 1))).all()
        assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged claims lost"
        assert dup == []
        await assert_store_matches_redis(engine, store, cid)
        redis: Redis[str] = Redis.from_url(env["STAMPEDE_REDIS_URL"], decode_responses=True)
        try:
            assert await reconcile(redis, store) == []
        finally:
            await redis.aclose()
    finally:
        await store.close()


@pytest.fixture
async def engine_for(clean_redis: str, tmp_path: Path) -> Engine:
    eng = Engine.from_url(clean_redis, Settings(data_dir=tmp_path))
    await eng.start()
    yield eng  # type: ignore[misc]
    await eng.close()


async def test_persister_killed_repeatedly_mid_sale_loses_nothing(
        tmp_path: Path, clean_redis: str, store_url: str, engine_for: Engine) -> None:  # noqa: F811
    env = _env(tmp_path, clean_redis, store_url)
    await engine_for.define_campaign("kill", campaign_spec(stock=4000, per_user=3))
    sale = Sale(engine_for, "kill")
    load = sale.start()
    proc = _persister(env, tmp_path)
    try:
        for _ in range(KILLS):
            await asyncio.sleep(random.uniform(0.4, 0.9))
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
            proc = _persister(env, tmp_path)
        await asyncio.sleep(0.5)
    finally:
        sale.stop.set()
        await load
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert len(sale.acknowledged) > 500
    await _check(engine_for, env, store_url, "kill", sale.acknowledged)


async def test_empty_redis_mid_sale_then_recover_sells_nothing_twice(
        tmp_path: Path, clean_redis: str, store_url: str, engine_for: Engine) -> None:  # noqa: F811
    env = _env(tmp_path, clean_redis, store_url)
    await engine_for.define_campaign("wipe", campaign_spec(stock=1500, per_user=3))
    sale = Sale(engine_for, "wipe")
    proc = _persister(env, tmp_path)
    try:
        load = sale.start()
        await asyncio.sleep(1.5)
        sale.stop.set()
        await load
        drained = _run(env, "persist", "--drain")  # what Redis acknowledged is stored...
        assert drained.returncode == 0, drained.stderr[-2000:]
        before = sale.acknowledged.copy()
        await engine_for.redis.flushall()  # ...when Redis loses everything, mid-sale
        gone = await engine_for.claim("wipe", "late", "tee")
        assert gone.outcome is Outcome.NOT_FOUND
        rec = _run(env, "recover", "wipe")
        assert rec.returncode == 0, rec.stderr[-2000:]
        stats = await engine_for.stats("wipe")
        assert stats is not None and not stats.fenced
        load = sale.start()  # the sale goes on until it sells out
        await asyncio.sleep(2.0)
        sale.stop.set()
        await load
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    stats = await engine_for.stats("wipe")
    assert stats is not None
    sku = stats.skus[0]
    assert sku.released == 1500 and sku.held + sku.sold + sku.available == 1500
    raw = await engine_for.redis.hgetall("{c:wipe}:claims")
    assert before <= set(raw), "a claim acknowledged before the wipe is missing after recover"
    await _check(engine_for, env, store_url, "wipe", sale.acknowledged)
