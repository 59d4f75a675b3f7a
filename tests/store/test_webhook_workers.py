"""Several delivery workers on one store: per-endpoint leases, a worker killed with
SIGKILL taken over, and the attempt log pruned. SQLite and PostgreSQL."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import func, select

from stampede import Engine
from stampede.durable.delivery import FLUSH_EVERY, AddressGuard, Deliverer, DeliverySettings
from stampede.durable.persister import Persister
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.durable.webhook_leases import LeaseLost, Leases
from stampede.durable.webhooks import WebhookCreate, Webhooks
from tests.store.test_webhooks import LOOPBACK, Receiver, _in_order, _rush, _until

FAST = DeliverySettings(poll_s=0.05, connect_timeout_s=1, timeout_s=1, backoff_base_s=0.05,
                        backoff_max_s=0.3, lease_ms=1500)


async def test_a_lease_is_one_workers_until_it_expires_or_is_released(store: Store) -> None:
    a, b = Leases(store, ttl_ms=300, owner="a"), Leases(store, ttl_ms=300, owner="b")
    assert await a.take("wh_1")
    assert not await b.take("wh_1"), "two workers held one endpoint"
    assert await a.take("wh_1")  # renewing our own
    assert await b.take("wh_2")  # other endpoints are free
    await asyncio.sleep(0.35)
    assert await b.take("wh_1"), "an expired lease was not taken over"
    with pytest.raises(LeaseLost):
        await a.keep("wh_1", margin_ms=1000)  # a learns it lost the endpoint
    await b.release_all()
    assert await a.take("wh_1") and await a.take("wh_2")
    async with store.engine.connect() as conn:
        owners = (await conn.execute(select(t.webhook_leases.c.owner))).scalars().all()
    assert owners == ["a", "a"]


async def test_racing_workers_take_a_lease_exactly_once(store: Store) -> None:
    workers = [Leases(store, ttl_ms=10_000, owner=f"w{n}") for n in range(8)]
    taken = await asyncio.gather(*(w.take("wh_race") for w in workers))
    assert sum(taken) == 1, taken


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    """One local HTTP server with three endpoint paths, each its own Receiver."""
    found = [Receiver() for _ in range(3)]
    app = web.Application()
    for n, r in enumerate(found):
        app.router.add_post(f"/hook/{n}", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    for n, r in enumerate(found):
        r.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook/{n}"
        r.delay_s = 0.01
    yield found
    await runner.cleanup()


async def _leases(store: Store) -> dict[str, str]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t.webhook_leases))).all()
    return {r.endpoint_id: r.owner for r in rows}


async def test_two_workers_one_killed_mid_burst_deliver_everything_in_order(
        sale: Engine, persister: Persister, store: Store, store_url: str,
        receivers: list[Receiver], tmp_path: Path) -> None:
    hooks = Webhooks(store)
    for r in receivers:
        created = await hooks.create(WebhookCreate(url=r.url, events=["*"]))
        assert created.secret is not None
        r.secrets.append(created.secret)
    await _rush(sale, ("alpha", "beta"), 60)
    await persister.drain(timeout_s=60)
    async with store.engine.connect() as conn:
        expected = {f"{row.campaign_id}.{row.seq}" for row in (await conn.execute(
            select(t.events.c.campaign_id, t.events.c.seq))).all()}
    env = {**os.environ, "STAMPEDE_STORE_URL": store_url, "STAMPEDE_DATA_DIR": str(tmp_path),
           "STAMPEDE_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK, "STAMPEDE_WEBHOOK_POLL_MS": "50",
           "STAMPEDE_WEBHOOK_TIMEOUT_S": "1", "STAMPEDE_WEBHOOK_LEASE_MS": "1500"}
    workers = [subprocess.Popen([sys.executable, "-m", "stampede.runtime.cli", "deliver"],
                                env=env, stderr=subprocess.DEVNULL) for _ in range(2)]

    def delivered() -> int:
        return sum(len(set(r.ids())) for r in receivers)

    try:
        await _until(lambda: delivered() >= len(expected), 60, "the burst under way")
        # SIGKILL a worker holding at least one endpoint: no release, its lease must expire.
        victim = None
        while victim is None:
            owners = set((await _leases(store)).values())
            victim = next((w for w in workers if any(f":{w.pid}:" in o for o in owners)), None)
        held_before = [e for e, o in (await _leases(store)).items() if f":{victim.pid}:" in o]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert delivered() < 3 * len(expected), "the burst ended before the kill"
        survivor = next(w for w in workers if w is not victim)
        await _until(lambda: all(set(r.ids()) >= expected for r in receivers), 60,
                     "every event at every endpoint after the takeover")
        leases = await _leases(store)
        assert all(f":{survivor.pid}:" in leases[e] for e in held_before), leases
        survivor.terminate()
        assert survivor.wait(15) == 0
        assert await _leases(store) == {}, "leases not released on shutdown"
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for r in receivers:
        ids = r.ids()
        assert set(ids) == expected
        _in_order(ids)  # per campaign: first deliveries in seq order, no hole
        assert r.refused_signature == 0  # and every duplicate had the same id and body
        # At most the deliveries not yet recorded per campaign at the kill:
        assert len(ids) - len(set(ids)) <= 2 * FLUSH_EVERY


async def test_the_worker_prunes_the_delivery_log_by_count_and_age(
        sale: Engine, persister: Persister, store: Store, receivers: list[Receiver]) -> None:
    hooks = Webhooks(store)
    receiver = receivers[0]
    receiver.delay_s = 0
    created = await hooks.create(WebhookCreate(url=receiver.url, events=["*"]))
    assert created.secret is not None
    receiver.secrets.append(created.secret)
    old = int((time.time() - 3 * 86_400) * 1000)
    async with store.begin() as conn:  # attempts of a removed endpoint, days old
        await conn.execute(t.webhook_attempts.insert(), [
            {"endpoint_id": "wh_gone", "message_id": f"x.{n}", "ts": old, "status": 204,
             "outcome": "delivered"} for n in range(5)])
    await _rush(sale, ("alpha",), 12)
    await persister.drain(timeout_s=30)
    settings = DeliverySettings(poll_s=0.05, timeout_s=1, lease_ms=1500, attempts_keep=5,
                                attempts_max_age_s=86_400, prune_interval_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer(store, AddressGuard.from_spec(LOOPBACK),
                                         settings).run(stop))
    try:
        await _until(lambda: len(receiver.got) >= 13, 20, "every event delivered")
        deadline = time.monotonic() + 10
        while await hooks.attempts(created.id) > 5 or await hooks.attempts("wh_gone"):
            assert time.monotonic() < deadline, "the log was not pruned"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    log = await hooks.deliveries(created.id, 100)
    assert [d.message_id for d in log] == receiver.ids()[::-1][:5]  # the newest kept
    assert await hooks.prune(5, 86_400_000) == 0  # idempotent


async def test_prune_keeps_the_newest_per_endpoint(store: Store) -> None:
    now = int(time.time() * 1000)
    async with store.begin() as conn:
        await conn.execute(t.webhook_attempts.insert(), [
            {"endpoint_id": f"wh_{e}", "message_id": f"c.{n}", "ts": now - 1000 * (20 - n),
             "status": 204, "outcome": "delivered"} for e in "ab" for n in range(20)])
    hooks = Webhooks(store)
    assert await hooks.prune(keep=7, max_age_ms=10_500) == 2 * 13
    async with store.engine.connect() as conn:
        left: dict[str, int] = dict((await conn.execute(
            select(t.webhook_attempts.c.endpoint_id, func.count())
            .group_by(t.webhook_attempts.c.endpoint_id))).all())
    assert left == {"wh_a": 7, "wh_b": 7}
    assert [d.message_id for d in await hooks.deliveries("wh_a", 100)] == [
        f"c.{n}" for n in range(19, 12, -1)]
