"""The property (model) suites in cluster mode: the sale model, the coupon model and the
coupon rules model (tests/domain/test_model.py, tests/coupons/test_model.py,
tests/coupons/test_rules_model.py) against an engine on the
session's Valkey Cluster, with fewer examples than on one server (the same rules,
the same checks after every step; the time budget is the suite's)."""

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from stampede import Settings
from tests.coupons.test_model import CouponMachine
from tests.coupons.test_rules_model import RulesMachine
from tests.domain.test_model import SaleMachine

_EXAMPLES = settings(max_examples=20, stateful_step_count=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


def test_engine_agrees_with_model_on_a_cluster(clean_cluster: str) -> None:
    run_state_machine_as_test(
        lambda: SaleMachine(clean_cluster, Settings(redis_cluster=True)), settings=_EXAMPLES)


def test_coupons_agree_with_model_on_a_cluster(clean_cluster: str) -> None:
    run_state_machine_as_test(
        lambda: CouponMachine(clean_cluster, Settings(redis_cluster=True)), settings=_EXAMPLES)


def test_coupon_rules_agree_with_model_on_a_cluster(clean_cluster: str) -> None:
    run_state_machine_as_test(
        lambda: RulesMachine(clean_cluster, Settings(redis_cluster=True)), settings=_EXAMPLES)
