"""The gateway in cluster mode: a representative subset of tests/api and tests/coupons.

Claims, confirm/cancel, idempotent replays and a lost reply, a rush over HTTP,
waitlists and the waiting room, the scalper guard, coupon claims, redemption
across merchants, gifts and the expiry sweep: the same tests, collected here,
take this folder's `engine` (on the session's Valkey Cluster) and the `api`
fixture built on it.
"""

from tests.api.conftest import api
from tests.api.test_api import (
    test_claim_confirm_cancel_flow,
    test_http_rush_never_oversells,
    test_idempotent_http_claim,
)
from tests.api.test_guard_api import (
    test_challenge_round_trip_and_blocked,
    test_throttled_is_429_with_an_exact_retry_after,
)
from tests.api.test_idempotency import (
    test_idempotent_claims_race_from_many_connections,
    test_retry_after_a_lost_reply_never_claims_twice,
)
from tests.api.test_queues import test_waiting_room_flow, test_waitlist_flow
from tests.coupons.test_claims import (
    test_a_retried_batch_answers_again_without_issuing_twice,
    test_concurrent_claims_never_pass_a_total_cap,
    test_sale_claims_and_coupon_claims_keep_to_their_campaigns,
)
from tests.coupons.test_gifts_and_expiry import (
    test_expiry_sweep_expires_with_events,
    test_gift_moves_ownership_once,
)
from tests.coupons.test_redemption import drop, test_two_merchants_redeeming_one_code_at_once

__all__ = [
    "api",
    "drop",
    "test_a_retried_batch_answers_again_without_issuing_twice",
    "test_challenge_round_trip_and_blocked",
    "test_claim_confirm_cancel_flow",
    "test_concurrent_claims_never_pass_a_total_cap",
    "test_expiry_sweep_expires_with_events",
    "test_gift_moves_ownership_once",
    "test_http_rush_never_oversells",
    "test_idempotent_claims_race_from_many_connections",
    "test_idempotent_http_claim",
    "test_retry_after_a_lost_reply_never_claims_twice",
    "test_sale_claims_and_coupon_claims_keep_to_their_campaigns",
    "test_throttled_is_429_with_an_exact_retry_after",
    "test_two_merchants_redeeming_one_code_at_once",
    "test_waiting_room_flow",
    "test_waitlist_flow",
]
