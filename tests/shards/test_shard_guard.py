"""The scalper guard on a sharded campaign, against a real Valkey: the per-user rate
exact, device accounts within the documented bound (N times the limit), the divided
campaign-wide rates, and a claim that borrows charged to the limiters once."""

from typing import Any

from stampede import Engine, Outcome
from stampede.domain import pow, shard_guard, shards
from stampede.domain.models import CampaignPatch
from stampede.domain.throttle import ClientSignals, Rate, ThrottlePatch, ThrottleSpec
from stampede.state import keys, records
from tests.conftest import campaign_spec


def _users_by_shard(n: int, count: int) -> list[list[str]]:
    by: list[list[str]] = [[] for _ in range(n)]
    i = 0
    while min(len(b) for b in by) < count:
        user = f"user{i}"
        by[shards.shard_of_user(user, n)].append(user)
        i += 1
    return [b[:count] for b in by]


async def _define(engine: Engine, throttle: dict[str, Any], n: int, stock: int = 100) -> None:
    spec = campaign_spec(stock=stock, per_user=5, shards=n, throttle=throttle)
    assert (await engine.define_campaign("hot", spec))[0] is Outcome.OK


async def test_each_shard_enforces_a_share_of_the_shared_rates(engine: Engine) -> None:
    await _define(engine, {"user": {"per_s": 2, "burst": 3},
                           "device": {"per_s": 10, "burst": 5},
                           "campaign": {"per_s": 1000, "burst": 9}}, n=4)
    for k in range(4):
        raw = await engine.redis.hget(keys.campaign_keys(keys.shard_id("hot", k, 4)).meta, "th")
        cfg = records.decode_guard_config(raw)
        assert cfg.user is not None and cfg.user.interval_ms == 500  # exact: unchanged
        assert cfg.device is not None and (cfg.device.interval_ms, cfg.device.burst) == (400, 2)
        assert cfg.campaign is not None and (cfg.campaign.interval_ms, cfg.campaign.burst) == \
            (4, 3)
    spec = shard_guard.shard_spec(ThrottleSpec(), 4)
    assert spec.device is None and spec.campaign is None


async def test_a_user_over_their_rate_is_throttled(engine: Engine) -> None:
    await _define(engine, {"user": {"per_s": 0.001, "burst": 2}}, n=2)
    got = [(await engine.claim("hot", "ann", "tee", 1,
                               client=ClientSignals(device="d1"))).outcome for _ in range(3)]
    assert got == [Outcome.OK, Outcome.OK, Outcome.THROTTLED]


async def test_a_device_gets_at_most_n_times_its_accounts_limit(engine: Engine) -> None:
    n = 2
    await _define(engine, {"accounts_per_device": {"challenge_above": 2, "reject_above": 2}},
                  n=n)
    users = [u for group in _users_by_shard(n, 5) for u in group]  # 5 on each shard
    outcomes = [(await engine.claim("hot", u, "tee", 1,
                                    client=ClientSignals(device="farm"))).outcome
                for u in users]
    # Each shard lets in the limit's accounts of the ones it serves, then blocks:
    # the device gets exactly the bound, n x 2, and no more.
    assert outcomes.count(Outcome.OK) == n * 2
    assert outcomes.count(Outcome.BLOCKED) == len(users) - n * 2
    # Another device is not affected.
    assert (await engine.claim("hot", users[-1], "tee", 1,
                               client=ClientSignals(device="own"))).outcome is Outcome.OK


async def test_a_claim_that_borrows_is_charged_once(engine: Engine) -> None:
    # Two units, both moved to one shard: the other is dry.
    await _define(engine, {"user": {"per_s": 0.001, "burst": 1}}, n=2, stock=2)
    avail = await engine.shards.available("hot", 2, "tee")
    rich = max(avail, key=lambda k: avail[k])
    await engine.shards.move("hot", 2, 1 - rich, rich, "tee", avail[1 - rich])
    dry_user = _users_by_shard(2, 1)[1 - rich][0]
    dry_before = engine.shards.dry
    first = await engine.claim("hot", dry_user, "tee", 1)
    # Sent twice (SHARD_DRY, a borrow, again): a second charge would throttle it
    # (a burst of 1 for the user).
    assert first.outcome is Outcome.OK
    assert engine.shards.dry == dry_before + 1
    again = await engine.claim("hot", dry_user, "tee", 1)  # charged once: now over
    assert (again.outcome, again.reason) == (Outcome.THROTTLED, "user")


async def test_a_challenge_is_solved_on_the_claimants_shard(engine: Engine) -> None:
    await _define(engine, {"accounts_per_device": {"challenge_above": 1, "reject_above": 5},
                           "challenge": {"base_bits": 4, "step_bits": 2, "max_bits": 8}}, n=2)
    first, second = _users_by_shard(2, 2)[1]
    signals = ClientSignals(device="dev")
    assert (await engine.claim("hot", first, "tee", 1, client=signals)).outcome is Outcome.OK
    asked = await engine.claim("hot", second, "tee", 1, client=signals)
    assert asked.outcome is Outcome.CHALLENGE_REQUIRED and asked.challenge is not None
    solution = pow.solve(asked.challenge.token, asked.challenge.difficulty)
    solved = await engine.claim("hot", second, "tee", 1, client=ClientSignals(
        device="dev", challenge=asked.challenge.token, solution=solution))
    assert solved.outcome is Outcome.OK


async def test_a_throttle_patch_gives_each_shard_its_share(engine: Engine) -> None:
    await _define(engine, {"user": {"per_s": 2, "burst": 3}}, n=4)
    patch = CampaignPatch(throttle=ThrottlePatch(device=Rate(per_s=10, burst=5),
                                                 campaign=Rate(per_s=1000, burst=9)))
    assert await engine.patch_campaign("hot", patch, "ops") is Outcome.OK
    for k in range(4):
        meta = keys.campaign_keys(keys.shard_id("hot", k, 4)).meta
        cfg = records.decode_guard_config(await engine.redis.hget(meta, "th"))
        assert cfg.user is not None and cfg.user.interval_ms == 500  # kept, exact
        assert cfg.device is not None and (cfg.device.interval_ms, cfg.device.burst) == (400, 2)
        assert cfg.campaign is not None and (cfg.campaign.interval_ms, cfg.campaign.burst) == \
            (4, 3)
    stats = await engine.stats("hot")
    assert stats is not None and stats.throttle is not None  # the spec as patched, undivided
    assert stats.throttle.device == Rate(per_s=10, burst=5)


async def test_a_throttle_patch_applies_to_the_next_claim_on_every_shard(
        engine: Engine) -> None:
    await _define(engine, {}, n=2)
    patch = CampaignPatch(throttle=ThrottlePatch(user=Rate(per_s=0.001, burst=1)))
    assert await engine.patch_campaign("hot", patch, "ops") is Outcome.OK
    for group in _users_by_shard(2, 1):  # a user served by each shard
        user = group[0]
        got = [(await engine.claim("hot", user, "tee", 1)).outcome for _ in range(2)]
        assert got == [Outcome.OK, Outcome.THROTTLED], user
    off = CampaignPatch(throttle=ThrottlePatch(user=None))
    assert await engine.patch_campaign("hot", off, "ops") is Outcome.OK
    for group in _users_by_shard(2, 1):
        assert (await engine.claim("hot", group[0], "tee", 1)).outcome is Outcome.OK
