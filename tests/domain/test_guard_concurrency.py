"""The guard's limits hold under concurrent claims from several engines (several workers)."""

import asyncio
import random
from collections import Counter
from typing import Any

from stampede import Engine
from stampede.domain.throttle import ClientSignals
from stampede.outcomes import Outcome
from stampede.state import keys
from tests.conftest import campaign_spec


async def _engines(clean_redis: str, settings: Any, n: int) -> list[Engine]:
    engines = [Engine.from_url(clean_redis, settings) for _ in range(n)]
    for e in engines:
        await e.start()
    return engines


async def test_device_and_rate_caps_hold_across_workers(clean_redis: str, settings: Any) -> None:
    engines = await _engines(clean_redis, settings, 3)
    try:
        await engines[0].define_campaign("h", campaign_spec(stock=10_000, per_user=100, throttle={
            "accounts_per_device": {"challenge_above": 5, "reject_above": 5},
            "user": {"per_s": 0.001, "burst": 4}}))
        rng = random.Random(3)

        async def attempt(i: int) -> tuple[str, Outcome]:
            user = f"acct{rng.randrange(40)}"
            result = await engines[i % 3].claim("h", user, "tee", 1,
                                                client=ClientSignals(device="one-phone"))
            return user, result.outcome

        answers = await asyncio.gather(*(attempt(i) for i in range(600)))
        held = Counter(u for u, o in answers if o is Outcome.OK)
        assert len(held) == 5  # exactly the first five accounts on the device
        assert all(n == 4 for n in held.values())  # each exactly its burst
        assert {o for _, o in answers} == {Outcome.OK, Outcome.BLOCKED, Outcome.THROTTLED}
        seen = await engines[0].redis.hget(keys.guard_keys("h").state, "d:one-phone")
        assert seen is not None and seen.count(",") == 5
        stats = await engines[0].stats("h")
        assert stats.skus[0].held == 20
    finally:
        for e in engines:
            await e.close()
