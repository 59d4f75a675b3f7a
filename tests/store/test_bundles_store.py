"""Bundle claims survive an emptied Redis (every key as it was: lines, their links, the
bundles' idempotent answers, the presale codes, persons and allocations their lines
took) and audit checks them (sold units per SKU add up; a bundle held in part or split
is found), on SQLite and PostgreSQL; from a store of bundles held as one event each, or
of the older shape (a claim_held per line, then bundle_held)."""

from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select

from stampede import Engine, Outcome
from stampede.domain.models import CampaignSpec, PresaleCodeBatch
from stampede.domain.refunds import RefundRequest
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys, records
from tests.conftest import iso
from tests.domain.test_bundles import bundle_spec, lines
from tests.store.old_bundle_events import rewrite_as_older
from tests.store.test_recovery_keys import _dump

TTL = 86_400_000
SHAPES = pytest.mark.parametrize("older", [False, True], ids=["one_event", "older_shape"])


async def _persist(persister: Persister, redis: "Redis[str]", cid: str, older: bool) -> None:
    """Drain the campaign's events to the store, first rewritten in the older shape."""
    if older:
        assert await rewrite_as_older(redis, cid) > 0
    await persister.drain()


def _units_read(dump: dict[str, Any], cid: str) -> dict[str, Any]:
    """The dump with each user's units read by SKU: their order in the field is the
    writer's (a Lua table's, or recovery's), and every reader decodes them."""
    users = keys.campaign_keys(cid).users
    return {**dump, users: {f: records.decode_units(v) if "|" not in f else v
                            for f, v in dump[users].items()}}


@SHAPES
async def test_recovery_rebuilds_bundles_and_audit_counts_them(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        older: bool) -> None:
    await sale.define_campaign("bs1", bundle_spec())
    sold = await sale.claim_bundle("bs1", "u1", bundle="fan", idempotency_key="k1")
    held = await sale.claim_bundle("bs1", "u2", lines=lines(("cap", 2), ("tkt", 1)),
                                   idempotency_key="k2")
    gone = await sale.claim_bundle("bs1", "u3", bundle="fan")
    single = await sale.claim("bs1", "u4", "tkt", 2)
    assert sold.claim and held.claim and gone.claim and single.claim
    assert (await sale.confirm(sold.claim.claim_id, "u1")).outcome is Outcome.OK
    assert (await sale.cancel(gone.claim.claim_id, "u3")).outcome is Outcome.OK
    refunded = await sale.refunds.refund(sold.claim.claim_id, RefundRequest(), "ops",
                                         op_key="r1")  # every line, one answer
    assert refunded.view and (refunded.view.refunded, refunded.view.amount) == (2, 7000)
    await _persist(persister, raw_redis, "bs1", older)
    before = await _dump(raw_redis, "bs1")
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "bs1", TTL)
    after = await _dump(raw_redis, "bs1")
    assert _units_read(after, "bs1") == _units_read(before, "bs1")
    # the retried claim answers the same bundle; its lines act together still
    again = await sale.claim_bundle("bs1", "u2", lines=lines(("cap", 2), ("tkt", 1)),
                                    idempotency_key="k2")
    assert again.claim and again.claim.claim_id == held.claim.claim_id
    assert again.claim.lines == held.claim.lines
    retried = await sale.refunds.refund(sold.claim.claim_id, RefundRequest(), "ops",
                                        op_key="r1")
    assert retried.view == refunded.view
    done = await sale.confirm(held.claim.claim_id, "u2")
    assert done.claim and done.claim.lines and \
        {x.status for x in done.claim.lines} == {"confirmed"}
    await persister.drain()
    summary = await audit(store, "bs1")
    assert summary["ok"], summary
    camp = summary["campaigns"]["bs1"]
    assert camp["bundles"] == {"count": 3}
    assert {s: (c["held"], c["sold"]) for s, c in camp["skus"].items()} == {
        "tkt": (2, 1), "tee": (0, 0), "cap": (0, 2)}  # the single claim of 2 still held


@SHAPES
async def test_audit_finds_a_bundle_held_in_part(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        older: bool) -> None:
    await sale.define_campaign("bs2", bundle_spec())
    r = await sale.claim_bundle("bs2", "u1", bundle="fan")
    assert r.claim and r.claim.lines
    await _persist(persister, raw_redis, "bs2", older)
    assert (await audit(store, "bs2"))["ok"]
    e = t.events.c
    async with store.begin() as conn:  # the store lost one line's hold
        if older:  # its claim_held
            await conn.execute(delete(t.events).where(
                e.campaign_id == "bs2", e.type == "claim_held",
                e.data.contains(r.claim.lines[1].claim_id)))
        else:  # its item in the bundle_held
            await conn.execute(t.events.update().where(
                e.campaign_id == "bs2", e.type == "bundle_held").values(
                data=func.replace(e.data, ';tee|1|2000|', '')))
    summary = await audit(store, "bs2")
    kinds = {v["kind"] for v in summary["campaigns"]["bs2"]["violation_samples"]}
    assert "bundle_incomplete" in kinds, summary


def _presale_bundle_spec() -> CampaignSpec:
    """Bundles with every presale check: a fans' phase (a code lends its tier), a
    per_person limit, an allocation of tickets for the app channel and a price step."""
    raw = msgspec.to_builtins(bundle_spec(
        phases=[{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"]}]))
    raw["limits"]["per_person"] = 4
    for s in raw["skus"]:
        if s["sku"] == "tkt":
            s["allocations"] = [{"name": "app", "qty": 3, "channels": ["app"]}]
        if s["sku"] == "tee":
            s["price_steps"] = [{"price": 1500, "first_units": 1}]
    return msgspec.convert(raw, CampaignSpec)


@SHAPES
async def test_presale_bundles_come_back_with_codes_persons_and_allocations(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        older: bool) -> None:
    await sale.define_campaign("bs3", _presale_bundle_spec())
    _, _, batch = await sale.presale_codes.issue(
        "bs3", PresaleCodeBatch(count=2, tier="fan", uses=1), "ops")
    assert batch is not None
    c1, c2 = (row.split(",")[0] for row in
              list(sale.presale_codes.csv_lines("bs3", batch))[1:3])
    sold = await sale.claim_bundle("bs3", "u1", bundle="fan", code=c1, identity="p1",
                                   channel="app", idempotency_key="k1")
    gone = await sale.claim_bundle("bs3", "u2", lines=lines(("tkt", 2), ("tee", 1)),
                                   code=c2, identity="p2", channel="app")
    kept = await sale.claim_bundle("bs3", "u3", bundle="fan", tiers=("fan",),
                                   identity="p3", channel="web")
    assert sold.claim and gone.claim and kept.claim and sold.claim.lines
    assert [x.price for x in sold.claim.lines] == [5000, 1500]  # the tee's first unit
    assert (await sale.confirm(sold.claim.claim_id, "u1")).outcome is Outcome.OK
    assert (await sale.cancel(gone.claim.claim_id, "u2")).outcome is Outcome.OK
    await _persist(persister, raw_redis, "bs3", older)
    if not older:  # one event per bundle, none per line
        async with store.begin() as conn:
            types = [r.type for r in await conn.execute(select(t.events.c.type).where(
                t.events.c.campaign_id == "bs3").order_by(t.events.c.seq))]
        assert types.count("bundle_held") == 3 and "claim_held" not in types
    before = await _dump(raw_redis, "bs3")
    await raw_redis.flushall()
    await recover_campaign(raw_redis, store, "bs3", TTL)
    after = await _dump(raw_redis, "bs3")

    def rebuilt(dump: dict[str, Any]) -> dict[str, Any]:
        # Code-attempt limiters are not rebuilt; al_next (the sweeper's next look at the
        # allocations) is rebuilt as '0' where a define left '' (test_allocations_store).
        units = {k: v for k, v in _units_read(dump, "bs3").items() if ":rl:code:" not in k}
        return {k: ({f: x for f, x in v.items() if f != "al_next"} if k.endswith(":meta")
                    else v) for k, v in units.items()}
    assert rebuilt(after) == rebuilt(before)
    # the spent code stays spent, the cancelled bundle's code is free again
    again = await sale.claim_bundle("bs3", "u4", bundle="fan", code=c1, identity="p4",
                                    channel="app")
    assert again.outcome is Outcome.PRESALE_CODE_USED
    reused = await sale.claim_bundle("bs3", "u5", bundle="fan", code=c2, identity="p5",
                                     channel="app")
    assert reused.outcome is Outcome.OK
    retried = await sale.claim_bundle("bs3", "u1", bundle="fan", code=c1, identity="p1",
                                      channel="app", idempotency_key="k1")
    assert retried.claim and retried.claim.claim_id == sold.claim.claim_id
    await persister.drain()
    summary = await audit(store, "bs3")
    assert summary["ok"], summary
    camp = summary["campaigns"]["bs3"]
    assert camp["bundles"] == {"count": 4}
    stats = await sale.stats("bs3")
    assert stats and {s.sku: s.revenue for s in stats.skus} == {"tkt": 5000, "tee": 1500,
                                                                  "cap": 0}
