"""Presale allocations returned by the sweeper against a real Valkey: an allocation
whose returns_at has passed goes back to the shared pool (its allocation_returned event,
by schedule) within one sweep, with no claim of the SKU; before that the sweep changes
nothing; a PATCH of allocations makes it look again."""

import time

import msgspec

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from stampede.state import keys
from tests.conftest import iso
from tests.domain.test_allocations import _meta, allocated_spec


async def _returned(engine: Engine, cid: str) -> list[tuple[str, str, str]]:
    events = await engine.redis.xrange(keys.events_key(cid))
    return [(e["allocation"], e["qty"], e["by"]) for _, e in events
            if e["type"] == "allocation_returned"]


async def test_the_sweeper_returns_a_due_allocation_without_a_claim(engine: Engine) -> None:
    allocs = [{"name": "app", "qty": 4, "channels": ["app"]},
              {"name": "partner", "qty": 3, "channels": ["partner"], "returns_at": iso(100)},
              {"name": "web", "qty": 2, "channels": ["web"], "returns_at": iso(200)}]
    await engine.define_campaign("as1", allocated_spec(allocs))
    meta = keys.campaign_keys("as1").meta
    await engine.sweep("as1")
    assert await _returned(engine, "as1") == []
    next_ms = int(await engine.redis.hget(meta, "al_next") or 0)
    assert abs(next_ms - (time.time() + 100) * 1000) < 5000  # partner's returns_at
    await engine.set_clock_offset("as1", 101_000)  # partner due, web not yet
    await engine.sweep("as1")
    assert await _returned(engine, "as1") == [("partner", "3", "schedule")]
    assert await _meta(engine, "as1", "app", "partner", "web") == [4, -1, 2]
    await engine.sweep("as1")  # nothing new is due: nothing happens twice
    assert await _returned(engine, "as1") == [("partner", "3", "schedule")]
    await engine.set_clock_offset("as1", 201_000)
    await engine.sweep("as1")
    assert await _returned(engine, "as1") == [("partner", "3", "schedule"),
                                              ("web", "2", "schedule")]
    assert await engine.redis.hget(meta, "al_next") == "0"  # none left pending


async def test_a_patch_makes_the_sweeper_look_again(engine: Engine) -> None:
    await engine.define_campaign("as2", allocated_spec(
        [{"name": "app", "qty": 4, "channels": ["app"]}]))
    await engine.sweep("as2")
    meta = keys.campaign_keys("as2").meta
    assert await engine.redis.hget(meta, "al_next") == "0"  # nothing to return, ever
    patch = msgspec.convert({"allocations": {"tkt": [
        {"name": "app", "qty": 4, "channels": ["app"], "returns_at": iso(50)}]}},
        CampaignPatch)
    assert await engine.patch_campaign("as2", patch, "ops") is Outcome.OK
    await engine.set_clock_offset("as2", 51_000)
    await engine.sweep("as2")
    assert await _returned(engine, "as2") == [("app", "4", "schedule")]
