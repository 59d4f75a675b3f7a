"""Durable acknowledgement (STAMPEDE_DURABLE_ACK): Valkey killed with SIGKILL under claims.

Each drill runs its own Valkey with `appendfsync everysec`, claims from many
buyers through the engine's batcher (what the API answers 201 for), kills
Valkey with SIGKILL mid-load, restarts it from its AOF and reads every
acknowledged claim back. With durable ack none may be missing; without it the
drill reports what it lost (a kill of Valkey alone rarely loses anything: what
it wrote is in the page cache; a host crash would lose the unsynced second).
"""

import asyncio
import os
import signal
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from stampede import Engine, Outcome, Settings
from stampede.errors import ConfigError, UnavailableError
from stampede.runtime.valkey import EmbeddedValkey
from stampede.state.scripts import NotDurableError
from tests.conftest import campaign_spec

BUYERS = 48
LOAD_S = 1.6


async def _drill(tmp_path: Path, durable: bool) -> tuple[dict[str, str], list[str]]:
    """Claims acknowledged before the kill, and those missing after the restart."""
    server = EmbeddedValkey(tmp_path / "valkey", appendfsync="everysec")
    url = server.start()
    settings = Settings(data_dir=tmp_path, durable_ack=durable)
    engine = Engine.from_url(url, settings)
    acknowledged: dict[str, str] = {}
    try:
        await engine.start()
        await engine.define_campaign("drill", campaign_spec(stock=1_000_000, per_user=None))

        async def buyer(n: int) -> None:
            i = 0
            while True:
                user = f"b{n}-{i}"
                i += 1
                try:
                    r = await engine.claim("drill", user, "tee")
                except (RedisConnectionError, UnavailableError, OSError):
                    return  # Valkey is gone: what was answered before is the test
                if r.outcome is Outcome.OK and r.claim:
                    acknowledged[r.claim.claim_id] = user

        buyers = [asyncio.create_task(buyer(n)) for n in range(BUYERS)]
        await asyncio.sleep(LOAD_S)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*buyers), 30)
        server.process.wait(5)
        server.process = None
        assert server.start() == url  # reloads the AOF

        missing = [claim_id for claim_id, user in acknowledged.items()
                   if await engine.get_claim(claim_id, user) is None]
        return acknowledged, missing
    finally:
        await engine.close()
        server.stop()


async def test_no_acknowledged_claim_is_lost_with_durable_ack(tmp_path: Path) -> None:
    acknowledged, missing = await _drill(tmp_path, durable=True)
    # Enough claims were answered for the drill to mean something: several
    # fsyncs of everysec went by under load.
    assert len(acknowledged) > 200, len(acknowledged)
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged claims lost"
    print(f"\ndurable ack: {len(acknowledged)} acknowledged, 0 lost")


async def test_the_same_drill_without_durable_ack_reports_its_losses(tmp_path: Path) -> None:
    acknowledged, missing = await _drill(tmp_path, durable=False)
    assert len(acknowledged) > 200, len(acknowledged)
    # No assertion on loss: a kill of Valkey alone may lose nothing.
    print(f"\nwithout durable ack: {len(acknowledged)} acknowledged, {len(missing)} lost")


async def test_an_unconfirmed_fsync_answers_unavailable_and_the_retry_gets_the_claim(
        tmp_path: Path) -> None:
    """everysec and a 1 ms wait: WAITAOF times out with 0 local fsyncs, the claim
    stood all the same, and the retry with its idempotency key gets it back."""
    server = EmbeddedValkey(tmp_path / "valkey", appendfsync="everysec")
    url = server.start()
    engine = Engine.from_url(url, Settings(data_dir=tmp_path, durable_ack=True))
    try:
        await engine.start()
        await engine.define_campaign("slow", campaign_spec(stock=10, per_user=1))
        engine.scripts.durable_ack_ms = 1  # now no everysec fsync can come in time
        with pytest.raises(NotDurableError, match="within 1 ms"):
            await engine.claim("slow", "ann", "tee", idempotency_key="k1")
        await asyncio.sleep(1.2)  # the next everysec fsync has run
        again = await engine.claim("slow", "ann", "tee", idempotency_key="k1")
        assert again.outcome is Outcome.OK and again.claim
        assert (await engine.get_claim(again.claim.claim_id, "ann")) is not None
        assert (await engine.stats("slow")) is not None
    finally:
        await engine.close()
        server.stop()


async def test_appendfsync_always_confirms_at_once(tmp_path: Path) -> None:
    """Under `always` the write is synced before Valkey answers: a 10 ms wait suffices
    (under everysec the next fsync is ~90 ms or more away)."""
    server = EmbeddedValkey(tmp_path / "valkey", appendfsync="always")
    url = server.start()
    engine = Engine.from_url(url, Settings(data_dir=tmp_path, durable_ack=True,
                                           durable_ack_timeout_ms=10))
    try:
        await engine.start()
        await engine.define_campaign("fast", campaign_spec(stock=10, per_user=1))
        results = await asyncio.gather(*(engine.claim("fast", f"u{i}", "tee")
                                         for i in range(20)))
        assert sum(r.outcome is Outcome.OK for r in results) == 10
    finally:
        await engine.close()
        server.stop()


async def test_durable_ack_refuses_to_start_without_an_aof(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    url = server.start()
    engine = Engine.from_url(url, Settings(data_dir=tmp_path, durable_ack=True))
    try:
        await engine.redis.config_set("appendonly", "no")
        with pytest.raises(ConfigError, match="appendonly yes"):
            await engine.start()
        await engine.redis.config_set("appendonly", "yes")
        await asyncio.sleep(0.5)  # the AOF is rewritten in the background first
        await engine.start()
        assert engine.scripts.loaded
    finally:
        await engine.close()
        server.stop()
