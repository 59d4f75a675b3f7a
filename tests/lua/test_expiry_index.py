"""The hold expiry index: sale holds in a list in creation order, the rest in the
deadlines zset; either way each hold expires once, at its deadline, and ids of
holds settled meanwhile are skipped and dropped."""

from stampede import Engine, Outcome
from stampede.state import keys
from tests.conftest import campaign_spec


async def test_a_hold_made_out_of_creation_order_expires_at_its_own_deadline(
        engine: Engine) -> None:
    await engine.define_campaign("x1", campaign_spec(stock=3, hold_ttl_s=60))
    ks = keys.campaign_keys("x1")
    first = await engine.claim("x1", "ann", "tee")
    await engine.set_clock_offset("x1", -30_000)  # the clock moved back: an earlier deadline
    early = await engine.claim("x1", "bob", "tee")
    assert first.claim and early.claim
    assert await engine.redis.lrange(ks.expiry, 0, -1) == [first.claim.claim_id]
    assert await engine.redis.zrange(ks.deadlines, 0, -1) == [early.claim.claim_id]
    await engine.set_clock_offset("x1", 31_000)  # past bob's deadline, before ann's
    assert await engine.sweep("x1") == 1
    assert (await engine.confirm(early.claim.claim_id, "bob")).outcome is Outcome.HOLD_EXPIRED
    await engine.set_clock_offset("x1", 61_000)
    assert await engine.sweep("x1") == 1
    assert await engine.sweep("x1") == 0  # each released once
    stats = await engine.stats("x1")
    assert stats and (stats.skus[0].available, stats.skus[0].held) == (3, 0)
    assert stats.claims_by_outcome["expired"] == 2


async def test_settled_holds_are_skipped_and_the_list_drains(engine: Engine) -> None:
    await engine.define_campaign("x2", campaign_spec(stock=5, per_user=None, hold_ttl_s=60))
    ks = keys.campaign_keys("x2")
    held = [await engine.claim("x2", f"u{i}", "tee") for i in range(3)]
    ids = [r.claim.claim_id for r in held if r.claim]
    assert await engine.redis.lrange(ks.expiry, 0, -1) == ids
    assert (await engine.confirm(ids[0], "u0")).outcome is Outcome.OK
    assert (await engine.cancel(ids[1], "u1")).outcome is Outcome.OK
    await engine.set_clock_offset("x2", 59_000)
    assert await engine.sweep("x2") == 0  # nothing due: the head's settled ids may go
    assert await engine.redis.lrange(ks.expiry, 0, -1) == ids[2:]
    await engine.set_clock_offset("x2", 61_000)
    assert await engine.sweep("x2") == 1
    assert await engine.redis.llen(ks.expiry) == 0
    stats = await engine.stats("x2")
    assert stats and (stats.skus[0].available, stats.skus[0].held, stats.skus[0].sold) == (4, 0, 1)


async def test_a_sweep_stops_at_its_limit_and_says_more_are_due(engine: Engine) -> None:
    await engine.define_campaign("x3", campaign_spec(stock=50, per_user=None, hold_ttl_s=60))
    for i in range(10):
        assert (await engine.claim("x3", f"u{i}", "tee")).claim
    await engine.set_clock_offset("x3", 61_000)
    ks = keys.campaign_keys("x3")
    expired, more = await engine.scripts.run("sweep", ks, [4])
    assert (int(expired), int(more)) == (4, 1)
    assert await engine.redis.llen(ks.expiry) == 6
    assert await engine.sweep("x3") == 6  # the engine sweeps until none are left
    assert await engine.redis.llen(ks.expiry) == 0


async def test_a_batch_that_holds_nothing_writes_nothing(engine: Engine) -> None:
    # The batch's writes are made at its end: refusals alone leave no trace, and a
    # claim on a missing campaign does not make it exist.
    assert (await engine.claim("nope", "ann", "tee")).outcome is Outcome.NOT_FOUND
    assert await engine.redis.keys(f"{keys.tag('nope')}*") == []
    await engine.define_campaign("x4", campaign_spec(stock=1))
    assert (await engine.claim("x4", "ann", "tee")).outcome is Outcome.OK
    before = await engine.redis.hgetall(keys.campaign_keys("x4").meta)
    assert (await engine.claim("x4", "bob", "tee")).outcome is Outcome.SOLD_OUT
    assert await engine.redis.hgetall(keys.campaign_keys("x4").meta) == before
