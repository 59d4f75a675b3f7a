"""The concurrency suite (tests/domain/test_concurrency.py) in cluster mode.

The same tests, collected here, take this folder's `engine` and `settings`
fixtures: an engine on the session's three-primary Valkey Cluster.
"""

from tests.domain.test_concurrency import (
    test_claims_coalesce_into_few_round_trips,
    test_double_clicks_never_pass_the_per_user_limit,
    test_mixed_lifecycle_keeps_accounting_exact,
    test_per_sku_limit_under_parallel_claims,
    test_thousands_of_claims_for_a_few_hundred_units,
    test_unbatched_concurrent_claims_do_not_oversell,
)

__all__ = [
    "test_claims_coalesce_into_few_round_trips",
    "test_double_clicks_never_pass_the_per_user_limit",
    "test_mixed_lifecycle_keeps_accounting_exact",
    "test_per_sku_limit_under_parallel_claims",
    "test_thousands_of_claims_for_a_few_hundred_units",
    "test_unbatched_concurrent_claims_do_not_oversell",
]
