"""The sharded-campaign suite (tests/shards/test_shards.py) in cluster mode: each
shard's slot on whichever node holds it, moves between nodes, the same invariants."""

from tests.shards.test_shards import (
    test_a_dry_shard_borrows_and_claims_settle_on_their_shard,
    test_define_splits_every_wave,
    test_stock_changes_go_through_shard_zero,
    test_thousands_of_concurrent_claims_across_shards,
)

__all__ = [
    "test_a_dry_shard_borrows_and_claims_settle_on_their_shard",
    "test_define_splits_every_wave",
    "test_stock_changes_go_through_shard_zero",
    "test_thousands_of_concurrent_claims_across_shards",
]
