"""A coupon drop split across shards in the store: every shard's coupon events
persisted and audited with the moves between shards, and recovery rebuilds every
shard's coupons, wallets, codes and counters."""

from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.domain import shards
from stampede.domain.coupons.spec import RedemptionRequest
from stampede.durable import queries as q
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import recover_all
from stampede.durable.store import Store
from stampede.state import keys
from tests.coupons.helpers import FIVE_OFF, drop_spec, merchant

TTL = 86_400_000


async def test_sharded_drop_persists_audits_and_recovers(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store) -> None:
    await sale.define_campaign("drop", drop_spec(
        stock=12, per_user=3, templates={"five": FIVE_OFF | {"transferable": True}},
        campaign={"shards": 3}))
    coupons = []
    for user in ("ann", "bob", "cat", "dan"):  # 12 coupons: every shard runs dry, borrows
        for i in range(3):
            a = await sale.coupons.claim("drop", user, "five", idempotency_key=f"{user}{i}")
            assert a.outcome is Outcome.OK, a
            coupons.append((user, a.view.coupons[0]))
    assert (await sale.coupons.claim("drop", "eve", "five")).outcome is Outcome.SOLD_OUT
    till = await merchant(sale)
    done = [await sale.coupons.redeem(till, RedemptionRequest(
        code=c.code or "", order_id=f"o{i}", order_amount=1000))
        for i, (_, c) in enumerate(coupons[:4])]
    assert all(r.outcome is Outcome.OK for r in done)
    assert (await sale.coupons.rollback(done[0].view.redemption_id, "m1")).outcome \
        is Outcome.OK
    giver, gift = coupons[-1]
    taker = next(u for u in ("eve", "fay", "gus", "hal")
                 if shards.shard_of_user(u, 3) != shards.shard_of_user(giver, 3))
    offer = await sale.coupons.offer_gift(gift.coupon_id, giver)
    assert (await sale.coupons.accept_gift(offer.view.transfer_token, taker)).outcome \
        is Outcome.OK
    before = await sale.coupons.stats("drop")
    wallets = {u: await sale.coupons.wallet(u) for u in ("ann", "bob", "cat", "dan", taker)}
    await persister.drain()

    summary = await audit(store, "drop")
    assert summary["ok"], summary
    moves = summary["campaigns"]["drop"]["shard_moves"]
    assert moves["moves"] >= 2 and moves["in_transit"] == 0 and moves["violations"] == []

    # The admin lookups show one drop: every shard's redemptions, each coupon's story.
    page = await q.redemptions(store, q.RedemptionFilter(drop="drop"))
    assert sorted(r.redemption_id for r in page.items) == \
        sorted(r.view.redemption_id for r in done)
    assert {r.campaign_id for r in page.items} == {"drop"}
    found = await q.coupon_record(store, gift.coupon_id)
    assert found is not None and found.record.campaign_id == "drop"
    assert [e.type for e in found.history][-1] == "coupon_transferred"

    await raw_redis.flushall()
    rebuilt = await recover_all(raw_redis, store, TTL)
    ids = sorted(keys.shard_id("drop", k, 3) for k in range(3))
    assert sorted(r.campaign_id for r in rebuilt) == ids
    assert await sale.coupons.stats("drop") == before
    for user, views in wallets.items():  # each coupon back on its shard, in its wallet
        assert await sale.coupons.wallet(user) == views
    # A code still names its shard after the rebuild: the till redeems it there.
    _, unused = coupons[5]
    again = await sale.coupons.redeem(till, RedemptionRequest(
        code=unused.code or "", order_id="o-late", order_amount=1000))
    assert again.outcome is Outcome.OK
    assert (await sale.coupons.claim("drop", "eve", "five")).outcome is Outcome.SOLD_OUT
    assert (await shards.audit(raw_redis, "drop", 3)).problems == []
    await persister.drain()
    assert (await audit(store))["ok"]
