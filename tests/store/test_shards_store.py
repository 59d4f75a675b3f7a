"""A sharded campaign in the store: every shard's stream persisted, the audit adds up
the moves between shards, and recovery rebuilds every shard."""

from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.domain import shards
from stampede.durable import queries as q
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.reconcile import reconcile, reconcile_campaign
from stampede.durable.recovery import recover_all
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.store.helpers import store_rows

TTL = 86_400_000


async def test_sharded_sale_persists_audits_and_recovers(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("hot", campaign_spec(stock=12, per_user=3, shards=3))
    held = []
    for user in ("ann", "bob", "cat", "dan"):  # 12 units: every shard runs dry, borrows
        for _ in range(3):
            r = await sale.claim("hot", user, "tee", idempotency_key=f"{user}-{len(held)}")
            assert r.outcome is Outcome.OK and r.claim
            held.append((r.claim.claim_id, user))
    assert (await sale.claim("hot", "eve", "tee")).outcome is Outcome.SOLD_OUT
    await sale.confirm(*held[0])
    before = await sale.stats("hot")
    await persister.drain()
    totals = [0, 0, 0, 0]  # the store's shards added up = the campaign's stats
    ids = sorted(keys.shard_id("hot", k, 3) for k in range(3))
    for scid in ids:
        (row,) = await store_rows(store, t.skus, scid)
        totals = [a + b for a, b in zip(totals, (row.available, row.held, row.sold,
                                                  row.released), strict=True)]
    assert before is not None and before.skus[0].sold == 1
    assert totals == [before.skus[0].available, before.skus[0].held, before.skus[0].sold,
                      before.skus[0].released]
    summary = await audit(store, "hot")
    assert summary["ok"], summary
    moves = summary["campaigns"]["hot"]["shard_moves"]
    assert moves["moves"] >= 2 and moves["in_transit"] == 0 and moves["violations"] == []

    assert await reconcile(raw_redis, store) == []  # every shard against its store rows
    for scid in ids:
        assert await reconcile_campaign(raw_redis, store, scid) == []
    page = await q.claims(store, q.ClaimFilter(campaign="hot"))  # every shard's claims
    assert sorted(c.claim_id for c in page.items) == sorted(c for c, _ in held)
    assert {c.campaign_id for c in page.items} == {"hot"}
    assert (await q.claims(store, q.ClaimFilter(campaign="ho"))).items == []
    await raw_redis.flushall()
    rebuilt = await recover_all(raw_redis, store, TTL)
    assert sorted(r.campaign_id for r in rebuilt) == ids
    for scid in ids:  # a gateway that never saw the campaign routes it the same
        assert await raw_redis.hget(keys.campaign_keys(scid).meta, "shards") == "3"
    after = await sale.stats("hot")
    assert after is not None and before is not None and after.skus == before.skus
    assert (await sale.claim("hot", "eve", "tee")).outcome is Outcome.SOLD_OUT
    assert (await sale.cancel(*held[1])).outcome is Outcome.OK  # on its own shard
    assert (await sale.claim("hot", "eve", "tee")).outcome is Outcome.OK  # borrowed
    assert (await shards.audit(raw_redis, "hot", 3)).problems == []
    await persister.drain()
    assert (await audit(store))["ok"]
