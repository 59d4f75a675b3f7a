"""The process's resources open in cleanup_ctx order and all close again."""

import asyncio
from pathlib import Path

from aiohttp import web

from stampede import Settings
from stampede.api.context import ENGINE
from stampede.runtime import lifecycle
from stampede.runtime.server import Listen, process_app


def _others() -> set["asyncio.Task[object]"]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def test_housekeeping_process_opens_everything_and_closes_it(
        clean_redis: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, persister=True, hold_sweep_interval_ms=50)
    before = _others()
    runner = web.AppRunner(process_app(settings, clean_redis, Listen()))
    await runner.setup()
    app = runner.app
    try:
        assert app[ENGINE].scripts.loaded
        assert await app[lifecycle.STORE].ping()
        assert await app[lifecycle.DURABLE_REDIS].ping()
        child = app[lifecycle.PERSISTER]
        assert child.alive()
        deliverer = app[lifecycle.DELIVERER]
        assert deliverer.alive() and deliverer.command == "deliver"
        assert len(_others() - before) >= 5  # sweeper, gauges, heal, reconcile, lag
    finally:
        await runner.cleanup()
    assert not child.alive() and child.proc is not None and child.proc.returncode is not None
    assert not deliverer.alive() and deliverer.proc is not None
    assert deliverer.proc.returncode is not None
    await asyncio.sleep(0)
    assert _others() - before == set(), "a periodic task outlived the process app"


async def test_other_workers_hold_only_the_engine_and_the_store(
        clean_redis: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    contexts = lifecycle.contexts(settings, clean_redis, housekeeping=False)
    assert len(contexts) == 2
    runner = web.AppRunner(process_app(settings, clean_redis, Listen(housekeeping=False)))
    await runner.setup()
    try:
        assert lifecycle.PERSISTER not in runner.app
        assert lifecycle.DELIVERER not in runner.app
        assert lifecycle.DURABLE_REDIS not in runner.app
    finally:
        await runner.cleanup()
