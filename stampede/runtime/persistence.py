"""The durable side of a running service: persister, healing, reconcile, lag gauges.

`serve` (and `stampede persist`) start these beside the gateway. Healing runs
once before the listeners open and then every second: a campaign whose
Redis state is older than the store (emptied, or restarted from older data)
is fenced and rebuilt before it sells again.
"""

import asyncio
import dataclasses
import signal
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis

from stampede import Settings
from stampede.durable.audit import audit
from stampede.durable.persister import Persister, lag
from stampede.durable.reconcile import reconcile
from stampede.durable.recovery import heal, recover_all, recover_campaign
from stampede.durable.store import Store, open_store
from stampede.metrics import PERSISTER_LAG, PERSISTER_PENDING
from stampede.periodic import every
from stampede.state import keys

HEAL_INTERVAL_S = 1.0
LAG_INTERVAL_S = 2.0


def state_client(redis_url: str) -> "Redis":
    """A Redis client of its own: the persister's blocking reads hold a connection."""
    return Redis.from_url(redis_url, decode_responses=True, health_check_interval=30)


async def heal_now(redis: "Redis", store: Store, settings: Settings) -> None:
    await heal(redis, store, settings.idempotency_ttl_s * 1000)


async def refresh_lag(redis: "Redis") -> None:
    """Persister lag per campaign, for /metrics."""
    cids = sorted(cast(set[str], await redis.smembers(keys.CAMPAIGN_INDEX)))
    for cid in cids:
        info = await lag(redis, cid)
        PERSISTER_LAG.labels(cid).set(info.oldest_age_s)
        PERSISTER_PENDING.labels(cid).set(info.pending)


def durable_tasks(redis: "Redis", store: Store, settings: Settings, stop: asyncio.Event,
                  persister: bool, metrics: bool) -> list["asyncio.Task[None]"]:
    """Start the persister (if asked), healing, reconcile and the lag gauges."""
    jobs: list[tuple[float, Callable[[], Awaitable[object]], str]] = [
        (HEAL_INTERVAL_S, lambda: heal_now(redis, store, settings), "heal"),
        (float(settings.reconcile_interval_s), lambda: reconcile(redis, store), "reconcile")]
    if metrics:
        jobs.append((LAG_INTERVAL_S, lambda: refresh_lag(redis), "persister-lag"))
    tasks = [asyncio.create_task(every(interval, job, stop, name))
             for interval, job, name in jobs]
    if persister:
        tasks.append(asyncio.create_task(Persister(redis, store, settings).run(stop)))
    return tasks


# -- the CLI's entry points (each opens and closes what it uses) ----------------

async def run_persister(settings: Settings, redis_url: str, drain: bool) -> None:
    """`stampede persist`: until SIGTERM/SIGINT, or once through with `drain`."""
    redis = state_client(redis_url)
    store = await open_store(settings.resolved_store_url)
    try:
        persister = Persister(redis, store, settings)
        if drain:
            await persister.drain(timeout_s=3600)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        lag_job = asyncio.create_task(every(LAG_INTERVAL_S, lambda: refresh_lag(redis), stop,
                                            "persister-lag"))
        await persister.run(stop)
        await lag_job
    finally:
        await store.close()
        await redis.aclose()


async def run_audit(settings: Settings, campaign: str | None, users: bool) -> dict[str, Any]:
    store = await open_store(settings.resolved_store_url)
    try:
        return await audit(store, campaign, users)
    finally:
        await store.close()


async def run_recover(settings: Settings, redis_url: str,
                      campaign: str | None) -> list[dict[str, Any]]:
    redis = state_client(redis_url)
    store = await open_store(settings.resolved_store_url)
    ttl = settings.idempotency_ttl_s * 1000
    try:
        if campaign is None:
            done = await recover_all(redis, store, ttl)
        else:
            done = [await recover_campaign(redis, store, campaign, ttl)]
        return [dataclasses.asdict(r) for r in done]
    finally:
        await store.close()
        await redis.aclose()
