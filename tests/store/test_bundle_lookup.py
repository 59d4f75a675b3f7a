"""Presales, bundles in the store (SQLite and PostgreSQL): each line's row names its
bundle claim, the admin lookup of a bundle's id gives the bundle with its lines and
their events (a bundle held as one event, or in the older shape: a claim_held per
line), exports carry the bundle id, a store written before migration 0015 is filled in
from its events, and bundles patched live come back after an emptied Redis."""

import msgspec
from alembic import command
from alembic.config import Config
from redis.asyncio import Redis
from sqlalchemy import Connection, delete, select

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from stampede.durable.audit import audit
from stampede.durable.bundle_queries import bundle_record
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.durable.store.db import MIGRATIONS
from stampede.state import keys
from tests.domain.test_bundles import bundle_spec, lines
from tests.store import test_lookups
from tests.store.old_bundle_events import rewrite_as_older
from tests.store.test_bundles_store import SHAPES
from tests.store.test_lookups import VIEWER, Served

served = test_lookups.served  # the admin and public apps over the store

TTL = 86_400_000


@SHAPES
async def test_a_bundle_id_is_looked_up_with_its_lines(served: Served, older: bool) -> None:
    engine = served.engine
    await engine.define_campaign("bl1", bundle_spec())
    fan = await engine.claim_bundle("bl1", "ann", bundle="fan")
    own = await engine.claim_bundle("bl1", "bob", lines=lines(("cap", 2), ("tkt", 1)))
    single = await engine.claim("bl1", "cat", "tkt", 1)
    assert fan.claim and fan.claim.lines and own.claim and own.claim.lines and single.claim
    assert (await engine.confirm(fan.claim.claim_id, "ann")).outcome is Outcome.OK
    if older:
        await rewrite_as_older(engine.redis, "bl1")
    await served.persister.drain()
    held = ["claim_held", "claim_held", "bundle_held"] if older else ["bundle_held"]

    found = await served.get(f"/admin/v1/claims/{fan.claim.claim_id}")
    assert found["bundle"] == "fan"
    record = found["record"]
    assert (record["claim_id"], record["user"], record["sku"], record["qty"],
            record["price"], record["status"]) == (fan.claim.claim_id, "ann", "", 1, 7000,
                                                   "confirmed")
    assert [(x["claim_id"], x["sku"], x["qty"], x["price"], x["status"], x["bundle_id"])
            for x in found["lines"]] == \
        [(x.claim_id, x.sku, x.qty, x.price, "confirmed", fan.claim.claim_id)
         for x in fan.claim.lines]
    assert [e["type"] for e in found["history"]] == \
        [*held, "claim_confirmed", "claim_confirmed"]
    # a claim of lines: no bundle name, its lines in the order claimed
    mine = await served.get(f"/admin/v1/claims/{own.claim.claim_id}")
    assert mine["bundle"] is None and mine["record"]["price"] == 2 * 900 + 5000
    assert [x["sku"] for x in mine["lines"]] == ["cap", "tkt"]
    # a line's own lookup names its bundle; a single claim names none
    line = await served.get(f"/admin/v1/claims/{fan.claim.lines[1].claim_id}")
    assert line["record"]["bundle_id"] == fan.claim.claim_id and line["lines"] == []
    # its history: the bundle's hold (older: its own claim_held too), its confirm
    assert [e["type"] for e in line["history"]] == \
        [*(["claim_held"] if older else []), "bundle_held", "claim_confirmed"]
    assert [e["fields"]["claim"] for e in line["history"]][-1] == fan.claim.lines[1].claim_id
    alone = await served.get(f"/admin/v1/claims/{single.claim.claim_id}")
    assert alone["record"]["bundle_id"] is None and alone["bundle"] is None
    # the listing and its exports carry the bundle id
    path = "/admin/v1/campaigns/bl1/claims"
    items = (await served.get(path))["items"]
    assert sorted((x["bundle_id"] or "") for x in items) == sorted(
        ["", *[fan.claim.claim_id] * 2, *[own.claim.claim_id] * 2])
    resp = await served.admin.get(path, params={"format": "csv"}, headers=VIEWER)
    rows = (await resp.text()).splitlines()
    assert rows[0].split(",")[-1] == "bundle_id"
    assert sum(row.endswith(fan.claim.claim_id) for row in rows[1:]) == 2
    other = fan.claim.claim_id[:-1] + ("1" if fan.claim.claim_id[-1] == "0" else "0")
    assert f"no claim '{other}'" in await served.refused(f"/admin/v1/claims/{other}",
                                                         status=404)


async def test_migration_0015_fills_in_a_store_written_before_it(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("bl2", bundle_spec())
    fan = await sale.claim_bundle("bl2", "ann", bundle="fan")
    single = await sale.claim("bl2", "cat", "tkt", 1)
    assert fan.claim and fan.claim.lines and single.claim
    await rewrite_as_older(raw_redis, "bl2")  # a store of then: a claim_held per line
    await persister.drain()
    # as 0014 left it: downgrade (drops the column and the bundles' history rows), then up
    async with store.begin() as conn:
        await conn.run_sync(_migrate, "0014")
    async with store.begin() as conn:
        await conn.run_sync(_migrate, "head")
    lookup_ids = [fan.claim.claim_id]
    async with store.read() as conn:
        got = dict((await conn.execute(select(t.claims.c.claim_id, t.claims.c.bundle_id)
                                       .where(t.claims.c.campaign_id == "bl2"))).all())
        held = (await conn.execute(select(t.claim_history.c.claim_id)
                                   .where(t.claim_history.c.claim_id.in_(lookup_ids)))).all()
    assert got == {**{x.claim_id: fan.claim.claim_id for x in fan.claim.lines},
                   single.claim.claim_id: None}
    assert len(held) == 1


def _migrate(conn: Connection, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    if target == "head":
        command.upgrade(cfg, "head")
    else:
        command.downgrade(cfg, target)


async def test_recovery_restores_the_bundles_as_patched(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("bl3", bundle_spec())
    old = await sale.claim_bundle("bl3", "ann", bundle="fan")
    assert old.claim
    patch = msgspec.convert({"bundles": {"fan": None, "duo": {"lines": [
        {"sku": "tkt", "qty": 2}, {"sku": "cap", "qty": 1}]}}}, CampaignPatch)
    assert await sale.patch_campaign("bl3", patch, "ops") is Outcome.OK
    meta = keys.campaign_keys("bl3").meta
    assert await raw_redis.hget(meta, "bd") == "duo=tkt:2,cap:1"
    await persister.drain()
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "bl3", TTL)
    assert await raw_redis.hget(meta, "bd") == "duo=tkt:2,cap:1"
    assert (await sale.claim_bundle("bl3", "bob", bundle="fan")).outcome is Outcome.NOT_FOUND
    duo = await sale.claim_bundle("bl3", "bob", bundle="duo")
    assert duo.outcome is Outcome.OK and duo.claim and duo.claim.price == 2 * 5000 + 900
    # the hold taken before the patch still confirms with its own lines
    done = await sale.confirm(old.claim.claim_id, "ann")
    assert done.claim and done.claim.lines
    assert [x.sku for x in done.claim.lines] == ["tkt", "tee"]
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary


async def test_a_line_stored_without_its_bundle_row_is_still_a_claim(
        sale: Engine, persister: Persister, store: Store) -> None:
    """The lookup of a bundle whose bundle_held row is missing (a store cut short) still
    gives its lines, ordered by creation."""
    await sale.define_campaign("bl4", bundle_spec())
    fan = await sale.claim_bundle("bl4", "ann", bundle="fan")
    assert fan.claim and fan.claim.lines
    await persister.drain()
    async with store.begin() as conn:
        await conn.execute(delete(t.claim_history).where(
            t.claim_history.c.claim_id == fan.claim.claim_id))
    found = await bundle_record(store, fan.claim.claim_id)
    assert found and found.bundle is None and found.record.price == 7000
    assert {x.claim_id for x in found.lines} == {x.claim_id for x in fan.claim.lines}
