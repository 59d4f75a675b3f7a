"""Presale allocations patched live survive an emptied Redis (each one's reserved units
from its qty as patched, less what holds took; the list as patched) and audit checks
holds against the allocations as patched, on SQLite and PostgreSQL."""

import msgspec
from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from tests.domain.test_allocations import allocated_spec
from tests.store.test_recovery_keys import _dump

TTL = 86_400_000


async def test_recovery_and_audit_follow_the_patched_allocations(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("alp", allocated_spec(
        [{"name": "app", "qty": 4, "channels": ["app"]},
         {"name": "web", "qty": 3, "channels": ["web"]}], stock=20))
    assert (await sale.claim("alp", "u1", "tkt", 3, channel="app")).outcome is Outcome.OK
    patch = msgspec.convert({"allocations": {"tkt": [
        {"name": "app", "qty": 8, "channels": ["app"]},
        {"name": "partner", "qty": 5, "channels": ["partner"]}]}}, CampaignPatch)
    assert await sale.patch_campaign("alp", patch, "ops") is Outcome.OK
    # after the patch app gives up to 8 in all (the audit would flag 8 against its old 4)
    took = await sale.claim("alp", "u2", "tkt", 5, channel="app")
    assert took.outcome is Outcome.OK
    assert (await sale.claim("alp", "u3", "tkt", 2, channel="partner")).outcome is Outcome.OK
    await persister.drain()
    before = await _dump(raw_redis, "alp")
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "alp", TTL)
    after = await _dump(raw_redis, "alp")
    meta = next(k for k in before if k.endswith(":meta"))
    alloc = {f: v for f, v in before[meta].items() if f.startswith("al")}
    assert "al:tkt:app" not in alloc and alloc["al:tkt:web"] == "-1"  # (0: dropped)
    assert alloc["al:tkt:partner"] == "3" and alloc["alq:tkt"] == "app:8,partner:5"
    # (al_next is rebuilt from the returns_at still pending: none, '0', where the patch
    # left '' for "scan"; test_allocations_store checks it)
    assert {f: v for f, v in after[meta].items() if f.startswith("al")} == \
        {f: v for f, v in alloc.items() if f != "al_next"}
    # the rebuilt allocations go on as before the flush
    assert (await sale.claim("alp", "u4", "tkt", 4, channel="partner")).outcome is \
        Outcome.OK  # 3 of partner + 1 shared
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
