"""Bundle claims survive an emptied Redis (every key as it was: lines, their links, the
bundles' idempotent answers) and audit checks them (sold units per SKU add up; a bundle
held in part or split is found), on SQLite and PostgreSQL."""

from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete

from stampede import Engine, Outcome
from stampede.domain.refunds import RefundRequest
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_campaign
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys, records
from tests.domain.test_bundles import bundle_spec, lines
from tests.store.test_recovery_keys import _dump

TTL = 86_400_000


def _units_read(dump: dict[str, Any], cid: str) -> dict[str, Any]:
    """The dump with each user's units read by SKU: their order in the field is the
    writer's (a Lua table's, or recovery's), and every reader decodes them."""
    users = keys.campaign_keys(cid).users
    return {**dump, users: {f: records.decode_units(v) if "|" not in f else v
                            for f, v in dump[users].items()}}


async def test_recovery_rebuilds_bundles_and_audit_counts_them(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
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
    await persister.drain()
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


async def test_audit_finds_a_bundle_held_in_part(
        sale: Engine, persister: Persister, store: Store) -> None:
    await sale.define_campaign("bs2", bundle_spec())
    r = await sale.claim_bundle("bs2", "u1", bundle="fan")
    assert r.claim and r.claim.lines
    await persister.drain()
    assert (await audit(store, "bs2"))["ok"]
    async with store.begin() as conn:  # the store lost one line's hold
        await conn.execute(delete(t.events).where(
            t.events.c.campaign_id == "bs2", t.events.c.type == "claim_held",
            t.events.c.data.contains(r.claim.lines[1].claim_id)))
    summary = await audit(store, "bs2")
    kinds = {v["kind"] for v in summary["campaigns"]["bs2"]["violation_samples"]}
    assert "bundle_incomplete" in kinds, summary
