"""GCRA: exact allow/deny sequences and retry-after values, on server time.

The campaign clock is pinned far ahead (clock offset) and moved in exact
steps, so the only time that passes between calls is the test's own few
milliseconds of real time; intervals are large enough that it cannot matter.
"""

from typing import Any

import pytest

from stampede import Engine
from stampede.state import keys
from tests.conftest import campaign_spec


async def _throttle(engine: Engine, limits: list[tuple[str, int, int]]) -> tuple[int, int]:
    ks = [keys.campaign_keys("g").meta] + [keys.limiter_key("g", "user", k) for k, _, _ in limits]
    args: list[Any] = []
    for _, interval, burst in limits:
        args += [interval, burst]
    allowed, retry = await engine.scripts.run("throttle", ks, args)
    return int(allowed), int(retry)


async def _at(engine: Engine, ms: int) -> None:
    await engine.set_clock_offset("g", 10**9 + ms)


@pytest.mark.parametrize("burst", [1, 3])
async def test_rate_and_burst_sequence(engine: Engine, burst: int) -> None:
    await engine.define_campaign("g", campaign_spec())
    await _at(engine, 0)
    # `burst` requests pass at once, the next is told to wait one interval (10 s).
    for _ in range(burst):
        assert await _throttle(engine, [("a", 10_000, burst)]) == (1, 0)
    allowed, retry = await _throttle(engine, [("a", 10_000, burst)])
    assert allowed == 0 and 9_900 <= retry <= 10_000
    await _at(engine, 10_000)  # one interval later: exactly one more
    assert await _throttle(engine, [("a", 10_000, burst)]) == (1, 0)
    assert (await _throttle(engine, [("a", 10_000, burst)]))[0] == 0
    await _at(engine, 10_000 * (burst + 2))  # idle long enough: the full burst again
    for _ in range(burst):
        assert await _throttle(engine, [("a", 10_000, burst)]) == (1, 0)
    assert (await _throttle(engine, [("a", 10_000, burst)]))[0] == 0


async def test_retry_after_is_exact(engine: Engine) -> None:
    await engine.define_campaign("g", campaign_spec())
    await _at(engine, 0)
    assert await _throttle(engine, [("b", 60_000, 1)]) == (1, 0)
    await _at(engine, 15_000)
    allowed, retry = await _throttle(engine, [("b", 60_000, 1)])
    assert allowed == 0 and 44_900 <= retry <= 45_000


async def test_a_refusal_consumes_nothing(engine: Engine) -> None:
    await engine.define_campaign("g", campaign_spec())
    await _at(engine, 0)
    assert await _throttle(engine, [("user", 10_000, 5), ("device", 10_000, 1)]) == (1, 0)
    # The device limit refuses: the user limit must not have been charged.
    for _ in range(3):
        assert (await _throttle(engine, [("user", 10_000, 5), ("device", 10_000, 1)]))[0] == 0
    for _ in range(4):
        assert await _throttle(engine, [("user", 10_000, 5)]) == (1, 0)
    assert (await _throttle(engine, [("user", 10_000, 5)]))[0] == 0
