"""The console's per-second rates, from two readings of the scripts' counters."""

from stampede.domain.console import OUTCOME_RATES, rates_between


def test_first_reading_has_no_rate() -> None:
    assert rates_between(None, {"held": 5}, 1.0) == {name: 0.0 for name in OUTCOME_RATES}


def test_rates_are_increase_over_time_and_never_negative() -> None:
    rates = rates_between({"held": 10, "sold_out": 4, "expired": 9},
                          {"held": 40, "sold_out": 4, "expired": 3, "throttled": 5}, 2.0)
    assert rates["held"] == 15.0
    assert rates["sold_out"] == 0.0
    assert rates["throttled"] == 2.5
    assert rates["expired"] == 0.0  # a counter that went back (a rebuilt campaign): no rate
    assert set(rates) == set(OUTCOME_RATES)


def test_no_time_no_rate() -> None:
    assert rates_between({"held": 1}, {"held": 9}, 0.0)["held"] == 0.0
