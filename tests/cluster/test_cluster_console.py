"""The ops console's live feed in cluster mode (tests/console/test_console_api.py):
one read per tick of every campaign, wherever its slot lives, and the fullest
primary's memory."""

import dataclasses
from pathlib import Path

import pytest

import tests.console.test_console_api as console
from stampede import Settings
from tests.api.conftest import api
from tests.console.test_console_api import (
    sale,
    test_feed_carries_campaigns_and_system,
    test_many_consoles_share_one_read_per_tick_and_see_claims_move,
)

__all__ = ["api", "sale", "test_feed_carries_campaigns_and_system",
           "test_many_consoles_share_one_read_per_tick_and_see_claims_move"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The console tests' settings, in cluster mode."""
    plain = Settings(data_dir=tmp_path, console_tick_ms=int(console.TICK_S * 1000),
                     console_max_listeners=60)
    return dataclasses.replace(plain, redis_cluster=True)
