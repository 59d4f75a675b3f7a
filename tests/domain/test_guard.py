"""The scalper guard on the claim path (lua/include/guard.lua), on a real Valkey.

Claims go through `Engine.claim` (the batched script), so every check is the
one production runs: lists, rates, accounts per device/network, risk rules,
proof-of-work challenges, refusal events and live changes.
"""

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from stampede import Engine, Settings
from stampede.domain import pow
from stampede.domain.config import checked
from stampede.domain.models import CampaignPatch
from stampede.domain.throttle import ClientSignals, ThrottlePatch
from stampede.errors import ConfigError, ValidationError
from stampede.outcomes import Outcome
from stampede.state import keys
from tests.conftest import campaign_spec

EASY = {"base_bits": 4, "step_bits": 2, "max_bits": 8}


async def _define(engine: Engine, throttle: dict[str, Any], cid: str = "g",
                  stock: int = 1000, per_user: int | None = 5) -> None:
    code, _ = await engine.define_campaign(cid, campaign_spec(stock=stock, per_user=per_user,
                                                              throttle=throttle))
    assert code is Outcome.OK


async def _claim(engine: Engine, user: str, cid: str = "g", **signals: Any) -> Any:
    return await engine.claim(cid, user, "tee", 1, client=ClientSignals(**signals))


async def _solved(engine: Engine, result: Any, user: str, cid: str = "g",
                  **signals: Any) -> Any:
    """Claim again with a solution to the challenge `result` carried."""
    ch = result.challenge
    assert result.outcome is Outcome.CHALLENGE_REQUIRED and ch is not None
    solution = pow.solve(ch.token, ch.difficulty)
    return await _claim(engine, user, cid, challenge=ch.token, solution=solution, **signals)


async def _patch(engine: Engine, cid: str, throttle: dict[str, Any]) -> Outcome:
    patch = msgspec.convert({"throttle": throttle}, CampaignPatch)
    return await engine.patch_campaign(cid, patch, "ops")


async def test_an_unguarded_campaign_takes_every_claim(engine: Engine) -> None:
    await engine.define_campaign("g", campaign_spec(per_user=None))
    for _ in range(20):
        assert (await _claim(engine, "u", device="d1")).outcome is Outcome.OK


async def test_accounts_per_device_challenge_then_reject(engine: Engine) -> None:
    await _define(engine, {"accounts_per_device": {"challenge_above": 2, "reject_above": 3},
                           "challenge": EASY})
    assert (await _claim(engine, "a1", device="dev")).outcome is Outcome.OK
    assert (await _claim(engine, "a2", device="dev")).outcome is Outcome.OK
    assert (await _claim(engine, "a1", device="dev")).outcome is Outcome.OK  # known account
    third = await _claim(engine, "a3", device="dev")
    assert third.outcome is Outcome.CHALLENGE_REQUIRED
    assert third.reason == "accounts_per_device" and third.challenge.difficulty == 4
    assert (await _solved(engine, third, "a3", device="dev")).outcome is Outcome.OK
    fourth = await _claim(engine, "a4", device="dev")
    assert (fourth.outcome, fourth.reason) == (Outcome.BLOCKED, "accounts_per_device")
    # Other devices are not affected.
    assert (await _claim(engine, "a4", device="other")).outcome is Outcome.OK


async def test_accounts_per_network_spare_an_allowed_network(engine: Engine) -> None:
    await _define(engine, {"accounts_per_network": {"challenge_above": 1, "reject_above": 2},
                           "allow": {"networks": ["198.51.100.0/24"]}, "challenge": EASY})
    assert (await _claim(engine, "n1", network="203.0.113.0/24")).outcome is Outcome.OK
    assert (await _claim(engine, "n2", network="203.0.113.0/24")).outcome \
        is Outcome.CHALLENGE_REQUIRED
    for i in range(10):  # a campus NAT: many accounts, one network, all welcome
        assert (await _claim(engine, f"campus{i}", network="198.51.100.0/24")).outcome \
            is Outcome.OK


async def test_block_lists(engine: Engine) -> None:
    await _define(engine, {"block": {"users": ["mallory"], "devices": ["bad-dev"],
                                     "networks": ["192.0.2.7"]}})
    cases = [("mallory", {}, "user_blocked"), ("eve", {"device": "bad-dev"}, "device_blocked"),
             ("eve", {"network": "192.0.2.0/24"}, "network_blocked")]
    for user, signals, reason in cases:
        result = await _claim(engine, user, **signals)
        assert (result.outcome, result.reason) == (Outcome.BLOCKED, reason)
    assert (await _claim(engine, "eve", device="fine", network="192.0.3.0/24")).outcome \
        is Outcome.OK


async def test_allowed_network_still_has_the_per_user_rate(engine: Engine) -> None:
    await _define(engine, {"user": {"per_s": 0.001, "burst": 1},
                           "network": {"per_s": 0.001, "burst": 1},
                           "allow": {"networks": ["198.51.100.0/24"]}})
    net = "198.51.100.0/24"
    assert (await _claim(engine, "x", network=net)).outcome is Outcome.OK
    assert (await _claim(engine, "y", network=net)).outcome is Outcome.OK  # network exempt
    again = await _claim(engine, "x", network=net)
    assert (again.outcome, again.reason) == (Outcome.THROTTLED, "user")


async def test_throttled_claims_carry_the_exact_retry_after(engine: Engine) -> None:
    await _define(engine, {"device": {"per_s": 0.1, "burst": 2}})
    assert (await _claim(engine, "a", device="d")).outcome is Outcome.OK
    assert (await _claim(engine, "b", device="d")).outcome is Outcome.OK
    refused = await _claim(engine, "c", device="d")
    assert (refused.outcome, refused.reason) == (Outcome.THROTTLED, "device")
    assert 9_900 <= refused.retry_after_ms <= 10_000
    await engine.set_clock_offset("g", 10_000)  # the campaign's clock, ten seconds on
    assert (await _claim(engine, "c", device="d")).outcome is Outcome.OK


async def test_a_stricter_limit_applies_to_the_very_next_request(engine: Engine) -> None:
    await _define(engine, {"user": {"per_s": 0.01, "burst": 5}})
    for _ in range(3):
        assert (await _claim(engine, "u")).outcome is Outcome.OK
    # A fourth request would pass a burst of 5; the burst becomes 2 at once.
    assert await _patch(engine, "g", {"user": {"per_s": 0.01, "burst": 2}}) is Outcome.OK
    refused = await _claim(engine, "u")
    assert refused.outcome is Outcome.THROTTLED
    assert 199_000 <= refused.retry_after_ms <= 200_000  # (4 - 2) intervals of 100 s
    assert (await _claim(engine, "v")).outcome is Outcome.OK  # a fresh user: its burst
    assert await _patch(engine, "g", {"enabled": False}) is Outcome.OK
    assert (await _claim(engine, "u")).outcome is Outcome.OK
    assert await _patch(engine, "g", {"enabled": True, "block": {"users": ["u"]}}) is Outcome.OK
    assert (await _claim(engine, "u")).outcome is Outcome.BLOCKED


@pytest.mark.parametrize("change,message", [
    ({"accounts_per_device": {"challenge_above": 5, "reject_above": 2}}, "reject_above"),
    ({"risk": [{"signal": "lapses", "action": "reject"}]}, "above"),
    ({"block": {"networks": ["10.0.0.0/8"]}}, "/16"),
    ({"block": {"networks": ["not-a-net"]}}, "network"),
    ({"challenge": {"base_bits": 20, "max_bits": 10}}, "max_bits"),
])
async def test_an_invalid_change_changes_nothing(engine: Engine, change: dict[str, Any],
                                                 message: str) -> None:
    await _define(engine, {"user": {"per_s": 1000, "burst": 100}})
    before = await engine.redis.hmget(keys.campaign_keys("g").meta, "th", "th_spec")
    with pytest.raises(ValidationError, match=message):
        await _patch(engine, "g", change)
    assert await engine.redis.hmget(keys.campaign_keys("g").meta, "th", "th_spec") == before


async def test_a_patch_keeps_what_it_does_not_name(engine: Engine) -> None:
    await _define(engine, {"user": {"per_s": 0.001, "burst": 1}, "block": {"users": ["m"]}})
    assert await _patch(engine, "g", {"device": {"per_s": 1, "burst": 5}}) is Outcome.OK
    assert (await _claim(engine, "m")).outcome is Outcome.BLOCKED
    assert (await _claim(engine, "u")).outcome is Outcome.OK
    assert (await _claim(engine, "u")).outcome is Outcome.THROTTLED
    assert await _patch(engine, "g", {"block": {}}) is Outcome.OK  # lists replaced whole
    assert (await _claim(engine, "m")).outcome is Outcome.OK


async def _challenged(engine: Engine, user: str) -> Any:
    result = await _claim(engine, user, device="shared")
    assert result.outcome is Outcome.CHALLENGE_REQUIRED
    return result


async def test_challenge_solutions_forged_expired_reused_or_foreign_are_refused(
        engine: Engine) -> None:
    await _define(engine, {"accounts_per_device": {"challenge_above": 1, "reject_above": 100},
                           "challenge": EASY})
    assert (await _claim(engine, "first", device="shared")).outcome is Outcome.OK
    # Forged: signed with another key.
    fake = pow.issue(b"x" * 32, "alice", "g", 4, 10**13)
    result = await _claim(engine, "alice", device="shared", challenge=fake.token,
                          solution=pow.solve(fake.token, 4))
    assert result.outcome is Outcome.CHALLENGE_REQUIRED
    # Expired: a genuine challenge whose time has passed.
    key = next(iter(engine.gate.challenges._keys.values()))
    old = pow.issue(key, "alice", "g", 4, 1_000_000, ttl_ms=1000)
    result = await _claim(engine, "alice", device="shared", challenge=old.token,
                          solution=pow.solve(old.token, 4))
    assert result.outcome is Outcome.CHALLENGE_REQUIRED
    # Another user's: bob's challenge does not serve alice.
    bobs = await _challenged(engine, "bob")
    solution = pow.solve(bobs.challenge.token, bobs.challenge.difficulty)
    result = await _claim(engine, "alice", device="shared", challenge=bobs.challenge.token,
                          solution=solution)
    assert result.outcome is Outcome.CHALLENGE_REQUIRED
    # Too little work: a wrong counter.
    mine = await _challenged(engine, "alice")
    bad = next(str(c) for c in range(10**6) if pow.leading_zero_bits(
        hashlib.sha256(f"{mine.challenge.token}:{c}".encode()).digest()) < 4)
    result = await _claim(engine, "alice", device="shared", challenge=mine.challenge.token,
                          solution=bad)
    assert result.outcome is Outcome.CHALLENGE_REQUIRED
    # The right one: accepted once, refused when reused (by anyone).
    good = pow.solve(mine.challenge.token, mine.challenge.difficulty)
    signals = {"device": "shared", "challenge": mine.challenge.token, "solution": good}
    assert (await _claim(engine, "alice", **signals)).outcome is Outcome.OK
    assert (await _claim(engine, "alice", **signals)).outcome is Outcome.CHALLENGE_REQUIRED


async def test_risk_rules_and_rising_difficulty(engine: Engine) -> None:
    await _define(engine, {
        "accounts_per_device": {"challenge_above": 1, "reject_above": 100},
        "risk": [{"signal": "account_age_s", "below": 86_400, "action": "challenge"},
                 {"signal": "lapses", "above": 1, "action": "reject"}],
        "challenge": EASY}, per_user=10)
    assert (await _claim(engine, "old", account_age_s=10**7)).outcome is Outcome.OK
    young = await _claim(engine, "young", account_age_s=60)
    assert (young.outcome, young.reason) == (Outcome.CHALLENGE_REQUIRED, "risk_age")
    assert young.challenge.difficulty == 4
    await _claim(engine, "seen", device="d")  # the device's one account
    both = await _claim(engine, "young", account_age_s=60, device="d")
    assert both.challenge.difficulty == 6  # two signals: one step harder
    assert (await _claim(engine, "unknown-age")).outcome is Outcome.OK  # no claim, no rule
    # Lapses: a user who cancels holds twice is refused.
    for _ in range(2):
        held = await _claim(engine, "flaky")
        assert held.outcome is Outcome.OK
        assert (await engine.cancel(held.claim.claim_id, "flaky")).outcome is Outcome.OK
    refused = await _claim(engine, "flaky")
    assert (refused.outcome, refused.reason) == (Outcome.BLOCKED, "risk_lapses")


async def test_recent_claims_across_campaigns(engine: Engine) -> None:
    rule = {"risk": [{"signal": "recent_campaigns", "above": 2, "action": "reject"}]}
    for cid in ("c1", "c2", "c3", "c4"):
        await _define(engine, rule, cid=cid)
    await _claim(engine, "hopper", cid="c4")  # the engine learns c4's rules read the signal
    for cid in ("c1", "c2", "c3"):
        assert (await _claim(engine, "hopper", cid=cid)).outcome is Outcome.OK
        await engine.gate.wait_background()
    refused = await _claim(engine, "hopper", cid="c4")
    assert (refused.outcome, refused.reason) == (Outcome.BLOCKED, "risk_recent")
    assert (await _claim(engine, "calm", cid="c4")).outcome is Outcome.OK


async def test_refusals_are_counted_and_recorded(engine: Engine) -> None:
    await _define(engine, {"block": {"users": ["m"]}, "device": {"per_s": 0.001, "burst": 1}})
    await _claim(engine, "m")
    await _claim(engine, "a", device="d")
    await _claim(engine, "b", device="d")
    stats = await engine.stats("g")
    assert stats.claims_by_outcome["blocked"] == 1 and stats.claims_by_outcome["throttled"] == 1
    events = await engine.redis.xrange(keys.events_key("g"))
    refused = [f for _, f in events if f["type"] == "requests_refused"]
    lines = [r for f in refused for r in f["refusals"].split(";")]
    assert lines[0].startswith("m,16,user_blocked")
    assert lines[1].startswith("b,15,device,") and lines[1].endswith(",d,")


async def test_a_guarded_claim_is_still_idempotent(engine: Engine) -> None:
    await _define(engine, {"user": {"per_s": 0.001, "burst": 1}})
    first = await engine.claim("g", "u", "tee", 1, idempotency_key="k1")
    again = await engine.claim("g", "u", "tee", 1, idempotency_key="k1")
    assert first.outcome is again.outcome is Outcome.OK
    assert first.claim.claim_id == again.claim.claim_id


def test_patch_model_refuses_unknown_fields() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"bogus": 1}, ThrottlePatch)


async def test_the_campaign_rate_holds_within_one_batch_and_across(engine: Engine) -> None:
    await _define(engine, {"campaign": {"per_s": 0.001, "burst": 3}})
    first = await asyncio.gather(*(_claim(engine, f"b{i}") for i in range(5)))  # one batch
    assert [r.outcome for r in first].count(Outcome.OK) == 3
    late = [r for r in first if r.outcome is not Outcome.OK]
    assert all((r.outcome, r.reason) == (Outcome.THROTTLED, "campaign") for r in late)
    assert 999_000 <= late[0].retry_after_ms <= 1_000_000
    assert (await _claim(engine, "next")).outcome is Outcome.THROTTLED  # the state was kept


async def test_campaigns_without_a_throttle_take_the_default(clean_redis: str,
                                                             tmp_path: Path) -> None:
    default = '{"user": {"per_s": 0.001, "burst": 1}}'
    eng = Engine.from_url(clean_redis, Settings(data_dir=tmp_path, throttle=default))
    await eng.start()
    try:
        await eng.define_campaign("d", campaign_spec())
        await eng.define_campaign("own", campaign_spec(throttle={"enabled": False}))
        assert (await _claim(eng, "u", cid="d")).outcome is Outcome.OK
        assert (await _claim(eng, "u", cid="d")).outcome is Outcome.THROTTLED
        assert (await _claim(eng, "u", cid="own")).outcome is Outcome.OK
        assert (await _claim(eng, "u", cid="own")).outcome is Outcome.OK
        stats = await eng.stats("d")
        assert stats.throttle is not None and stats.throttle.user.burst == 1
        assert (await eng.stats("own")).throttle is None
    finally:
        await eng.close()


@pytest.mark.parametrize("env", [
    {"STAMPEDE_THROTTLE": "{not json"},
    {"STAMPEDE_THROTTLE": '{"user": {"per_s": -1}}'},
    {"STAMPEDE_THROTTLE": '{"block": {"networks": ["1.0.0.0/8"]}}'},
    {"STAMPEDE_POW_SECRETS": "short:x"},
    {"STAMPEDE_TRUSTED_PROXIES": "10.0.0.0/33"},
])
def test_bad_throttle_settings_are_refused_at_start(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)  # what Settings cannot read alone, the domain checks
    with pytest.raises(ConfigError):
        checked(settings)


def test_the_command_refuses_bad_guard_settings_at_start(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stampede.runtime.cli import app
    env = {"STAMPEDE_DATA_DIR": str(tmp_path), "STAMPEDE_JWT_SECRET": "s" * 32}
    assert CliRunner().invoke(app, ["token", "u1"], env=env).exit_code == 0
    bad = CliRunner().invoke(app, ["token", "u1"], env=env | {"STAMPEDE_POW_SECRETS": "short:x"})
    assert bad.exit_code == 2


async def test_a_guard_switched_on_elsewhere_applies_to_the_next_claim(
        engine: Engine, clean_redis: str, settings: Any) -> None:
    await engine.define_campaign("g", campaign_spec(per_user=None))
    assert (await _claim(engine, "u")).outcome is Outcome.OK  # learns: unguarded
    other = Engine.from_url(clean_redis, settings)  # another worker, with the admin API
    await other.start()
    try:
        assert await _patch(other, "g", {"block": {"users": ["u"]}}) is Outcome.OK
    finally:
        await other.close()
    refused = await _claim(engine, "u")  # sent without context, sent again with it
    assert (refused.outcome, refused.reason) == (Outcome.BLOCKED, "user_blocked")
    assert (await _claim(engine, "v")).outcome is Outcome.OK
