"""The guard's state layout (lua/include/guard.lua): one hash per campaign whose fields
expire on their own, read once per batch and written once per expiry, on a real Valkey."""

import asyncio
from typing import Any

from stampede import Engine
from stampede.domain.throttle import ClientSignals
from stampede.outcomes import Outcome
from stampede.state import keys
from tests.conftest import campaign_spec

FULL = {"user": {"per_s": 10, "burst": 5}, "device": {"per_s": 10, "burst": 5},
        "network": {"per_s": 10, "burst": 10}, "campaign": {"per_s": 100_000, "burst": 1000},
        "accounts_per_device": {"challenge_above": 5, "reject_above": 5, "window_s": 1},
        "accounts_per_network": {"challenge_above": 50, "reject_above": 50, "window_s": 1}}


async def _define(engine: Engine, throttle: dict[str, Any]) -> None:
    code, _ = await engine.define_campaign("s", campaign_spec(stock=1000, per_user=100,
                                                              throttle=throttle))
    assert code is Outcome.OK


async def _claim(engine: Engine, user: str, device: str = "", network: str = "") -> Outcome:
    result = await engine.claim("s", user, "tee", 1,
                                client=ClientSignals(device=device, network=network))
    return result.outcome


async def _hpttl(engine: Engine, key: str, fields: list[str]) -> list[int]:
    return [int(t) for t in await engine.redis.execute_command(
        "HPTTL", key, "FIELDS", len(fields), *fields)]


async def test_the_state_is_one_hash_whose_fields_all_expire(engine: Engine) -> None:
    await _define(engine, FULL)
    outcomes = await asyncio.gather(*(_claim(engine, f"u{i}", f"dev{i % 3}", f"10.0.{i % 2}.0/24")
                                      for i in range(12)))
    assert set(outcomes) == {Outcome.OK}
    state = keys.guard_keys("s").state
    fields = sorted(await engine.redis.hkeys(state))
    assert fields == sorted([f"u:u{i}" for i in range(12)] + [f"d:dev{i}" for i in range(3)]
                            + [f"n:10.0.{i}.0/24" for i in range(2)])
    # No key of its own per user, device or network any more.
    assert {k async for k in engine.redis.scan_iter(match="{c:s}:*")} \
        <= {*keys.campaign_keys("s"), *keys.guard_keys("s"), keys.events_key("s")}
    # Each field lives until its TAT (at most burst x 100 ms) or, for a device's or
    # network's accounts, a window (1 s) after it was written, plus at most one
    # step of the 1024 ms expiry grid.
    ttls = dict(zip(fields, await _hpttl(engine, state, fields), strict=True))
    assert all(0 < t <= 500 + 1024 for f, t in ttls.items() if f[0] == "u")
    assert all(0 < t <= 1000 + 1024 for f, t in ttls.items() if f[0] in "dn")
    await asyncio.sleep(2.1)
    assert not await engine.redis.exists(state)  # all gone, none read in the meantime


async def test_accounts_slide_out_of_their_window_exactly(engine: Engine) -> None:
    await _define(engine, {"accounts_per_device": {"challenge_above": 2, "reject_above": 2,
                                                   "window_s": 60}})
    field = "d:phone"
    assert await _claim(engine, "a1", "phone") is Outcome.OK
    assert await _claim(engine, "a2", "phone") is Outcome.OK
    await engine.set_clock_offset("s", 30_000)
    assert await _claim(engine, "a3", "phone") is Outcome.BLOCKED
    assert await _claim(engine, "a1", "phone") is Outcome.OK  # a1 seen again at +30 s
    await engine.set_clock_offset("s", 60_000)  # a2 (seen at 0) is out; a1 (at +30 s) in
    assert await _claim(engine, "a3", "phone") is Outcome.OK
    assert await _claim(engine, "a4", "phone") is Outcome.BLOCKED
    listed = await engine.redis.hget(keys.guard_keys("s").state, field)
    tat, accounts = listed.split("|")
    assert tat == ""  # no device rate: no TAT
    assert [e.split(" ")[1] for e in accounts.rstrip(",").split(",")] == ["a1", "a3"]


async def test_a_batch_reads_its_state_once_and_writes_it_once_per_expiry(
        engine: Engine) -> None:
    await _define(engine, FULL)
    await engine.redis.config_resetstat()
    outcomes = await asyncio.gather(*(_claim(engine, f"u{i}", f"dev{i}", f"10.{i}.0.0/24")
                                      for i in range(40)))
    assert set(outcomes) == {Outcome.OK}
    stats = await engine.redis.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}
    runs = calls.get("evalsha", 0) + calls.get("eval", 0)
    assert runs >= 1
    # Per run: one HMGET of the state, one HSETEX for the users' fresh TATs (one
    # expiry) and one for the devices and networks (their accounts' window).
    assert calls.get("hsetex", 0) <= 2 * runs
    assert not {"zadd", "zcard", "pexpire", "hpexpire"} & set(calls)


async def test_a_rate_charge_keeps_the_accounts_beside_it(engine: Engine) -> None:
    """A refused account still spends the device's rate: the field is written again
    with the new TAT, its accounts kept and kept alive for their window."""
    await _define(engine, {"device": {"per_s": 0.01, "burst": 10},
                           "accounts_per_device": {"challenge_above": 1, "reject_above": 5,
                                                   "window_s": 3600}})
    state = keys.guard_keys("s").state
    assert await _claim(engine, "a1", "phone") is Outcome.OK
    first = await engine.redis.hget(state, "d:phone")
    assert await _claim(engine, "a2", "phone") is Outcome.CHALLENGE_REQUIRED
    tat, accounts = (await engine.redis.hget(state, "d:phone")).split("|")
    assert int(tat) - int(first.split("|")[0]) == 100_000  # charged: one interval on
    assert [e.split(" ")[1] for e in accounts.rstrip(",").split(",")] == ["a1"]
    [ttl] = await _hpttl(engine, state, ["d:phone"])
    assert 3_500_000 < ttl <= 3_600_000 * 5 // 4 + 1024  # the window, not the TAT's 200 s
