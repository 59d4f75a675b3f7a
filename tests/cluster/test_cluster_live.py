"""The live feed (SSE) in cluster mode (tests/api/test_live.py): one read per tick of a
campaign on its node, a reconnect served at once, the waiting room's counter pushed."""

import dataclasses
from pathlib import Path

import pytest

import tests.api.test_live as live
from stampede import Settings
from tests.api.test_live import (
    sale,
    test_a_reconnect_with_last_event_id_gets_the_current_state_at_once,
    test_the_waiting_rooms_serving_counter_is_pushed,
)

__all__ = ["sale", "test_a_reconnect_with_last_event_id_gets_the_current_state_at_once",
           "test_the_waiting_rooms_serving_counter_is_pushed"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The live tests' settings, in cluster mode."""
    plain = Settings(data_dir=tmp_path, live_tick_ms=int(live.TICK_S * 1000),
                     live_max_listeners=live.LISTENERS + 5)
    return dataclasses.replace(plain, redis_cluster=True)
