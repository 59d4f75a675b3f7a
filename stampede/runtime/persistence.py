"""The durable side of a running service: persister, healing, reconcile, lag gauges.

`serve` (and `stampede persist`) start these beside the gateway. Healing runs
once before the listeners open and then every second: a campaign whose
Redis state is older than the store (emptied, or restarted from older data)
is fenced and rebuilt before it sells again.
"""

import asyncio
import dataclasses
import gc
import signal
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import select

from stampede import Settings, logs
from stampede.durable.audit import audit
from stampede.durable.delivery import AddressGuard, Deliverer, DeliverySettings
from stampede.durable.lagcheck import compare
from stampede.durable.persister import Persister, lag
from stampede.durable.reconcile import reconcile
from stampede.durable.recovery import heal, recover_campaign, redis_behind
from stampede.durable.store import Store, open_store
from stampede.durable.store import schema as t
from stampede.metrics import CAMPAIGNS_HEALED, PERSISTER_LAG, PERSISTER_PENDING
from stampede.periodic import every
from stampede.state import connection, keys

HEAL_INTERVAL_S = 1.0
LAG_INTERVAL_S = 2.0


def state_client(redis_url: str, settings: Settings) -> "Redis":
    """A Redis client of its own: the persister's blocking reads hold a connection."""
    return connection.state_client(redis_url, settings.redis_cluster)


async def heal_now(redis: "Redis", store: Store, settings: Settings) -> None:
    healed = await heal(redis, store, settings.idempotency_ttl_s * 1000)
    if healed:
        CAMPAIGNS_HEALED.inc(len(healed))


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

PERSISTER_GC_GEN0 = 50_000
"""Container allocations between the persister's young-generation collections."""


def settle_heap() -> None:
    """Hide what start-up left alive (modules, SQLAlchemy's tables and caches) from the
    garbage collector: a worker's full collections then scan only what it made since.
    The persister allocates rows by the thousand, and those collections over the whole
    heap were a quarter of its CPU per event (bench.bench_persister).

    The youngest generation is also collected far less often: a batch keeps thousands
    of rows alive until it commits, and at the default threshold (700 allocations)
    every few hundred events rescanned them all, a tenth of the persister's CPU per
    event. Reference counting frees nearly all of them; the collector only has cycles
    to find, and those can wait for PERSISTER_GC_GEN0 allocations."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(PERSISTER_GC_GEN0, gen1, gen2)


async def run_persister(settings: Settings, redis_url: str, drain: bool) -> None:
    """`stampede persist`: until SIGTERM/SIGINT, or once through with `drain`."""
    redis = state_client(redis_url, settings)
    store = await open_store(settings.resolved_store_url)
    settle_heap()
    try:
        persister = Persister(redis, store, settings)
        if drain:
            await persister.drain(timeout_s=3600)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(logs.asyncio_exceptions)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        lag_job = asyncio.create_task(every(LAG_INTERVAL_S, lambda: refresh_lag(redis), stop,
                                            "persister-lag"))
        try:
            await persister.run(stop)
        finally:  # a run that failed ends its timer too: the process exits, to be restarted
            stop.set()
            await lag_job
    finally:
        await store.close()
        await redis.aclose()


def delivery_settings(settings: Settings) -> DeliverySettings:
    return DeliverySettings.from_settings(settings)


async def run_deliverer(settings: Settings) -> None:
    """`stampede deliver`: webhooks from the store until SIGTERM/SIGINT."""
    store = await open_store(settings.resolved_store_url)
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(logs.asyncio_exceptions)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        guard = AddressGuard.from_spec(settings.webhook_allowed_networks)
        await Deliverer(store, guard, delivery_settings(settings)).run(stop)
    finally:
        await store.close()


async def run_audit(settings: Settings, campaign: str | None, users: bool) -> dict[str, Any]:
    store = await open_store(settings.resolved_store_url)
    try:
        return await audit(store, campaign, users)
    finally:
        await store.close()


async def run_check(settings: Settings, redis_url: str, max_lag_s: float) -> dict[str, Any]:
    redis = state_client(redis_url, settings)
    store = await open_store(settings.resolved_store_url, migrate=False)
    try:
        return await compare(redis, store, max_lag_s)
    finally:
        await store.close()
        await redis.aclose()


@dataclasses.dataclass(frozen=True)
class RecoverPlan:
    """What `stampede recover` would do to one campaign (`--dry-run` prints these)."""
    campaign_id: str
    store_seq: int
    """Events the store holds."""
    redis_seq: int | None
    """Events Redis has counted (None: the campaign is not in Redis)."""
    live: bool
    """Taking requests now or later: a rebuild fences it (claims answer 503 meanwhile)."""
    redis_behind: str | None
    """Why Redis is older than the store, if it is (`serve` heals such a campaign itself)."""


async def plan_recover(settings: Settings, redis_url: str,
                       campaign: str | None) -> list[RecoverPlan]:
    """The campaigns a recover would rebuild, read without changing anything.

    Raises LookupError for a named campaign the store does not have."""
    redis = state_client(redis_url, settings)
    store = await open_store(settings.resolved_store_url)
    try:
        async with store.engine.connect() as conn:
            query = select(t.campaigns.c.campaign_id, t.campaigns.c.max_seq)
            if campaign is not None:
                query = query.where(t.campaigns.c.campaign_id == campaign)
            rows = sorted((await conn.execute(query)).all())
        if campaign is not None and not rows:
            raise LookupError(f"campaign {campaign!r} is not in the store "
                              f"({settings.resolved_store_url})")
        now_s, now_us = await redis.time()
        plans = []
        for cid, max_seq in rows:
            meta = cast(list[str | None], await redis.hmget(
                keys.campaign_keys(cid).meta, "state", "evseq", "closes_ms", "fenced",
                "time_offset_ms"))
            state, evseq, closes_ms, fenced, offset = meta
            now_ms = now_s * 1000 + now_us // 1000 + int(offset or 0)
            live = (state is not None and state != "closed" and fenced != "1"
                    and now_ms < int(closes_ms or 0))
            plans.append(RecoverPlan(cid, int(max_seq), None if state is None else int(evseq or 0),
                                     live, await redis_behind(redis, store, cid)))
        return plans
    finally:
        await store.close()
        await redis.aclose()


async def run_recover(settings: Settings, redis_url: str, campaigns: list[str],
                      step: Callable[[str, bool], None] | None = None) -> list[dict[str, Any]]:
    """Rebuild these campaigns from the store, one after another; `step(cid, done)`
    hears of each as it starts (False) and as it is rebuilt (True)."""
    redis = state_client(redis_url, settings)
    store = await open_store(settings.resolved_store_url)
    ttl = settings.idempotency_ttl_s * 1000
    try:
        rebuilt = []
        for cid in campaigns:
            if step is not None:
                step(cid, False)
            rebuilt.append(dataclasses.asdict(await recover_campaign(redis, store, cid, ttl)))
            if step is not None:
                step(cid, True)
        return rebuilt
    finally:
        await store.close()
        await redis.aclose()
