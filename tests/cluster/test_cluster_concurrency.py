"""The concurrency suites in cluster mode.

Whole suites (tests/domain/test_concurrency.py, test_guard_concurrency.py,
test_waitlist_concurrency.py) and the racing tests of the other folders
(claims, limits, codes, bundles, paid coupons, transfers, gates, the waiting
room), collected here: they take this folder's `engine`, `settings` and
`clean_redis` fixtures, so each runs against the session's three-primary
Valkey Cluster with replica acknowledgement on (the default).
"""

from tests.cluster.suites import gathered, suite_of

globals().update(gathered(
    suite_of("tests.domain.test_concurrency"),
    suite_of("tests.domain.test_guard_concurrency"),
    suite_of("tests.domain.test_waitlist_concurrency"),
    suite_of("tests.coupons.test_claims", "test_concurrent_claims_never_pass_a_total_cap",
             "test_concurrent_claims_of_one_user_stop_at_the_limit"),
    suite_of("tests.coupons.test_paid",
             "test_thousands_of_paid_claims_never_oversell_a_small_budget"),
    suite_of("tests.domain.test_per_person",
             "test_concurrent_claims_of_many_accounts_never_pass_a_person"),
    suite_of("tests.domain.test_bundles", "test_thousands_of_concurrent_bundles_and_singles"),
    suite_of("tests.domain.test_presale_codes",
             "test_concurrent_claims_spend_each_code_exactly_its_uses"),
    suite_of("tests.aftersale.test_transfers",
             "test_one_token_accepted_by_many_at_once_goes_to_one"),
    suite_of("tests.aftersale.test_tickets",
             "test_two_gates_scanning_the_same_tickets_at_once_admit_each_once"),
    suite_of("tests.lua.test_waiting_room", "test_concurrent_joins_get_unique_places"),
))
