"""The sharded-campaign suite (tests/shards/test_shards.py, the waiting room's
tests/shards/test_shard_queue.py and the sharded coupon drop's
tests/shards/test_shard_coupons.py) in cluster mode: each shard's slot on whichever
node holds it, moves between nodes, the queue on shard 0's node and passes checked on
the others, the same invariants."""

from redis.asyncio.cluster import RedisCluster

from stampede import Engine
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.shards.test_shard_coupons import (
    test_redeem_rollback_gift_and_patch_across_shards,
    test_thousands_of_concurrent_coupon_claims_across_shards,
)
from tests.shards.test_shard_queue import (
    test_a_shard_refuses_a_pass_after_its_expiry,
    test_one_queue_admits_in_order_and_every_shard_checks_the_pass,
)
from tests.shards.test_shards import (
    test_a_dry_shard_borrows_and_claims_settle_on_their_shard,
    test_define_splits_every_wave,
    test_skewed_demand_sells_every_unit,
    test_stock_changes_go_through_shard_zero,
    test_thousands_of_concurrent_claims_across_shards,
)

__all__ = [
    "test_redeem_rollback_gift_and_patch_across_shards",
    "test_thousands_of_concurrent_coupon_claims_across_shards",
    "test_a_dry_shard_borrows_and_claims_settle_on_their_shard",
    "test_a_shard_refuses_a_pass_after_its_expiry",
    "test_define_splits_every_wave",
    "test_one_queue_admits_in_order_and_every_shard_checks_the_pass",
    "test_skewed_demand_sells_every_unit",
    "test_stock_changes_go_through_shard_zero",
    "test_thousands_of_concurrent_claims_across_shards",
]


async def test_shards_land_on_different_primaries(engine: Engine) -> None:
    """Three shards on a three-primary cluster: one on each node."""
    await engine.define_campaign("hot", campaign_spec(stock=9, shards=3))
    assert isinstance(engine.redis, RedisCluster)
    metas = [keys.campaign_keys(keys.shard_id("hot", k, 3)).meta for k in range(3)]
    nodes = {engine.redis.get_node_from_key(meta).name for meta in metas}
    assert len(nodes) == 3
