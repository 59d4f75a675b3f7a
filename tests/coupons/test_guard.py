"""The scalper guard on coupon claims (lua/coupon_claim.lua with include/guard.lua),
on a real Valkey: the same checks as a sale claim's, in the same script call as the
claim, before its first write."""

import asyncio
from typing import Any

import msgspec

from stampede import Engine
from stampede.domain import pow
from stampede.domain.coupons.service import Answer
from stampede.domain.models import CampaignPatch
from stampede.domain.throttle import ClientSignals
from stampede.outcomes import Outcome
from stampede.state import keys
from tests.coupons.helpers import drop_spec

EASY = {"base_bits": 4, "step_bits": 1, "max_bits": 8}


async def _drop(engine: Engine, throttle: dict[str, Any] | None, cid: str = "d1",
                **kw: Any) -> None:
    campaign = {"throttle": throttle} if throttle is not None else {}
    code, _ = await engine.define_campaign(cid, drop_spec(campaign=campaign, **kw))
    assert code is Outcome.OK


async def _claim(engine: Engine, user: str, cid: str = "d1", **signals: Any) -> Answer:
    identity = signals.pop("identity", None)
    return await engine.coupons.claim(cid, user, "five", identity=identity,
                                      client=ClientSignals(**signals))


async def _state(engine: Engine, cid: str, users: list[str]) -> dict[str, Any]:
    """Everything a coupon claim may consume or issue: stock, per-user and per-day counts,
    budget and issue stats, persons, claims, coupons, codes, wallets."""
    ks = keys.coupon_keys(cid)
    names = ks.campaign._asdict() | ks.drop._asdict()
    out: dict[str, Any] = {n: await engine.redis.hgetall(names[n])
                           for n in ("stock", "users", "claims", "cpn", "codes", "cday",
                                     "cstats", "cusers")}
    out["wallets"] = {u: await engine.redis.smembers(keys.wallet_key(cid, u)) for u in users}
    out["coupon_claims"] = await engine.redis.hget(names["counts"], "coupon_claims")
    return out


async def test_the_user_rate_refuses_the_claim_past_its_burst_exactly(engine: Engine) -> None:
    await _drop(engine, {"user": {"per_s": 0.05, "burst": 3}})  # one claim per 20 s
    results = await asyncio.gather(*(_claim(engine, "u") for _ in range(4)))  # one batch
    assert [r.outcome for r in results] == [Outcome.OK] * 3 + [Outcome.THROTTLED]
    late = results[3]
    assert (late.reason, late.retry_after_ms) == ("user", 20_000)  # same server time: exact
    assert late.view is None and late.challenge is None
    assert (await _claim(engine, "other")).outcome is Outcome.OK  # a per-user limit


async def test_a_refused_claim_consumes_nothing(engine: Engine) -> None:
    """No coupon, no stock, budget, per-day, per-user-per-day or per-person quota."""
    await _drop(engine, {"user": {"per_s": 0.001, "burst": 1},
                         "accounts_per_device": {"challenge_above": 1, "reject_above": 5},
                         "block": {"users": ["mallory"], "devices": ["bad-dev"]},
                         "challenge": EASY},
                stock=10, per_day=2, per_user_per_day=1, budget=1000, per_person=1)
    first = await _claim(engine, "alice", identity="p-alice", device="dev-a")
    assert first.outcome is Outcome.OK
    users = ["alice", "mallory", "bob", "carol"]
    before = await _state(engine, "d1", users)
    refused = [await _claim(engine, "alice", identity="p-alice2", device="dev-x"),  # rate
               await _claim(engine, "mallory", identity="p-m", device="dev-m"),
               await _claim(engine, "bob", identity="p-bob", device="bad-dev"),
               await _claim(engine, "carol", identity="p-carol", device="dev-a")]  # 2nd account
    assert [(r.outcome, r.reason) for r in refused] == [
        (Outcome.THROTTLED, "user"), (Outcome.BLOCKED, "user_blocked"),
        (Outcome.BLOCKED, "device_blocked"),
        (Outcome.CHALLENGE_REQUIRED, "accounts_per_device")]
    assert all(r.view is None for r in refused)
    assert await _state(engine, "d1", users) == before
    sale = await engine.stats("d1")
    assert sale and (sale.skus[0].available, sale.skus[0].sold) == (9, 1)
    refused = ("throttled", "blocked", "challenge_required")
    assert {k: sale.claims_by_outcome.get(k) for k in refused} \
        == {"throttled": 1, "blocked": 2, "challenge_required": 1}
    stats = await engine.coupons.stats("d1")
    assert stats and (stats.totals.issued, stats.budget_left) == (1, 500)
    # What the refusals did not take is still there: the day's second coupon, the budget.
    ok = await _claim(engine, "dave", identity="p-dave", device="dev-d")
    assert ok.outcome is Outcome.OK
    assert (await _claim(engine, "erin", identity="p-erin", device="dev-e")).reason == "per_day"


async def test_refusals_are_recorded_in_one_event_per_batch(engine: Engine) -> None:
    await _drop(engine, {"block": {"users": ["m1", "m2"]}})
    results = await asyncio.gather(*(_claim(engine, u, device="d", network="203.0.113.0/24")
                                     for u in ("m1", "ok", "m2")))
    assert [r.outcome for r in results] == [Outcome.BLOCKED, Outcome.OK, Outcome.BLOCKED]
    events = await engine.redis.xrange(keys.events_key("d1"))
    refused = [f for _, f in events if f["type"] == "requests_refused"]
    assert len(refused) == 1 and refused[0]["n"] == "2"
    assert refused[0]["refusals"].split(";") == [
        "m1,16,user_blocked,,d,203.0.113.0/24", "m2,16,user_blocked,,d,203.0.113.0/24"]


async def test_a_challenge_solution_lets_exactly_one_claim_through(engine: Engine) -> None:
    await _drop(engine, {"accounts_per_device": {"challenge_above": 2, "reject_above": 9},
                         "challenge": EASY}, per_user=5)
    for u in ("a1", "a2"):
        assert (await _claim(engine, u, device="dev")).outcome is Outcome.OK
    asked = await _claim(engine, "a3", device="dev")
    assert asked.outcome is Outcome.CHALLENGE_REQUIRED and asked.challenge is not None
    assert asked.challenge.difficulty == 4
    solved = {"challenge": asked.challenge.token,
              "solution": pow.solve(asked.challenge.token, asked.challenge.difficulty)}
    both = await asyncio.gather(*(_claim(engine, "a3", device="dev", **solved)
                                  for _ in range(2)))
    assert sorted(r.outcome for r in both) == [Outcome.OK, Outcome.CHALLENGE_REQUIRED]
    again = await _claim(engine, "a3", device="dev", **solved)  # reused
    assert again.outcome is Outcome.CHALLENGE_REQUIRED
    assert len(await engine.coupons.wallet("a3")) == 1
    # Another user's solution is not this user's.
    stolen = await _claim(engine, "a4", device="dev", **solved)
    assert stolen.outcome is Outcome.CHALLENGE_REQUIRED


async def test_an_unthrottled_drop_is_unaffected(engine: Engine) -> None:
    await _drop(engine, None, stock=50)
    results = await asyncio.gather(*(_claim(engine, f"u{i}", device="one-phone",
                                            network="198.51.100.0/24") for i in range(30)))
    assert all(r.outcome is Outcome.OK for r in results)
    stats = await engine.stats("d1")
    assert stats and stats.throttle is None
    assert not {"throttled", "blocked", "challenge_required"} & set(stats.claims_by_outcome)
    assert not [k async for k in engine.redis.scan_iter(match="{c:d1}:rl:*")]
    assert not [k async for k in engine.redis.scan_iter(match="{c:d1}:acc:*")]


async def test_a_guard_switched_on_later_applies_to_the_next_claim(engine: Engine) -> None:
    await _drop(engine, None)
    assert (await _claim(engine, "u")).outcome is Outcome.OK  # learns: unguarded
    patch = msgspec.convert({"throttle": {"block": {"users": ["u"]}}}, CampaignPatch)
    assert await engine.patch_campaign("d1", patch, "ops") is Outcome.OK
    refused = await _claim(engine, "u")  # sent without context, sent again with it
    assert (refused.outcome, refused.reason) == (Outcome.BLOCKED, "user_blocked")
    assert (await _claim(engine, "v")).outcome is Outcome.OK
    off = msgspec.convert({"throttle": {"enabled": False}}, CampaignPatch)
    assert await engine.patch_campaign("d1", off, "ops") is Outcome.OK
    assert (await _claim(engine, "u")).outcome is Outcome.OK


async def test_a_guard_refusal_is_not_remembered_under_the_idempotency_key(
        engine: Engine) -> None:
    await _drop(engine, {"block": {"users": ["u"]}})
    first = await engine.coupons.claim("d1", "u", "five", idempotency_key="k",
                                       client=ClientSignals())
    assert first.outcome is Outcome.BLOCKED
    patch = msgspec.convert({"throttle": {"block": {"users": []}}}, CampaignPatch)
    assert await engine.patch_campaign("d1", patch, "ops") is Outcome.OK
    again = await engine.coupons.claim("d1", "u", "five", idempotency_key="k",
                                       client=ClientSignals())
    assert again.outcome is Outcome.OK
    replay = await engine.coupons.claim("d1", "u", "five", idempotency_key="k",
                                        client=ClientSignals())
    assert replay.view == again.view
