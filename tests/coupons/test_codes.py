"""Codes users type on a real server: promo codes, referral codes, wrong-code limits."""

import asyncio

import pytest

from stampede import Engine, Outcome
from tests.coupons.helpers import FIVE_OFF, drop_spec

TEMPLATES = {"five": FIVE_OFF,
             "promo": {"kind": "fixed_off", "face_value": 300, "valid_days": 30},
             "friend": {"kind": "fixed_off", "face_value": 200, "valid_days": 30},
             "bonus": {"kind": "fixed_off", "face_value": 100, "valid_days": 30}}


def coded_drop(stock: int = 100, **coupons: object) -> object:
    coupons.setdefault("promo_codes", {"SUMMER25": {"sku": "promo", "per_user": 2}})
    coupons.setdefault("referral", {"sku": "friend", "referrer_sku": "bonus"})
    return drop_spec(stock=stock, templates=TEMPLATES, **coupons)


async def test_promo_code_issues_its_sku_each_user_limited(engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop())
    r = await engine.coupons.claim("d1", "alice", "", code="summer-25")
    assert r.outcome is Outcome.OK, r
    assert r.view.sku == "promo" and [c.template for c in r.view.coupons] == ["promo"]
    assert (await engine.coupons.claim("d1", "alice", "", code="SUMMER25")).outcome is Outcome.OK
    third = await engine.coupons.claim("d1", "alice", "", code="SUMMER25")
    assert (third.outcome, third.reason, third.params) == (
        Outcome.LIMIT_EXCEEDED, "code_per_user", {"limit": 2, "held": 2})
    assert (await engine.coupons.claim("d1", "bob", "", code="SUMMER25")).outcome is Outcome.OK
    stats = await engine.coupons.stats("d1")
    assert stats and stats.templates["promo"].issued == 3


async def test_a_coded_sku_is_not_claimable_without_its_code(engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop())
    for sku in ("promo", "friend", "bonus"):
        r = await engine.coupons.claim("d1", "alice", sku)
        assert (r.outcome, r.reason) == (Outcome.NOT_FOUND, "code_required")
    assert (await engine.coupons.claim("d1", "alice", "five")).outcome is Outcome.OK


async def test_promo_code_obeys_the_drops_budget_and_stock(engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop(stock=2, budget=900))
    answers = [await engine.coupons.claim("d1", f"u{i}", "", code="SUMMER25") for i in range(4)]
    assert [a.outcome for a in answers[:3]] == [Outcome.OK, Outcome.OK, Outcome.SOLD_OUT]
    assert answers[2].reason == "stock"
    await engine.define_campaign("d2", coded_drop(stock=9, budget=700))
    answers = [await engine.coupons.claim("d2", f"u{i}", "", code="SUMMER25") for i in range(3)]
    assert [(a.outcome, a.reason) for a in answers] == [
        (Outcome.OK, ""), (Outcome.OK, ""), (Outcome.SOLD_OUT, "budget")]


async def test_wrong_codes_are_limited_per_user_then_every_code_is_throttled(
        engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop(wrong_codes={"per_hour": 3}))
    for guess in ("SUMMER24", "SUMMER26", "WINTER25"):
        r = await engine.coupons.claim("d1", "mallory", "", code=guess)
        assert (r.outcome, r.reason) == (Outcome.NOT_FOUND, "no_code")
    r = await engine.coupons.claim("d1", "mallory", "", code="SUMMER25")  # right, too late
    assert (r.outcome, r.reason) == (Outcome.THROTTLED, "code")
    assert r.retry_after_ms is not None and 0 < r.retry_after_ms <= 1_200_000
    # Other users keep their allowance; a right code consumes none of it.
    for _ in range(2):
        assert (await engine.coupons.claim("d1", "alice", "", code="SUMMER25")).outcome \
            is Outcome.OK
    assert (await engine.coupons.claim("d1", "alice", "", code="NOPE1")).reason == "no_code"
    # Malformed text is no code: refused the same way, without looking anything up.
    assert (await engine.coupons.claim("d1", "alice", "", code="ß!")).reason == "no_code"


async def test_referral_rewards_friend_and_referrer_once_per_friend(engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop())
    mine = await engine.coupons.referral_code("d1", "ann", "person-ann")
    assert mine.outcome is Outcome.OK and mine.view.created
    again = await engine.coupons.referral_code("d1", "ann", "person-ann")
    assert again.view.code == mine.view.code and not again.view.created
    code = mine.view.code
    r = await engine.coupons.claim("d1", "bob", "", code=code.lower(), identity="person-bob")
    assert r.outcome is Outcome.OK, r
    assert r.view.sku == "friend" and [c.template for c in r.view.coupons] == ["friend"]
    assert [c.template for c in await engine.coupons.wallet("ann")] == ["bonus"]
    twice = await engine.coupons.claim("d1", "bob", "", code=code, identity="person-bob")
    assert (twice.outcome, twice.reason) == (Outcome.LIMIT_EXCEEDED, "referral_used")
    # Bob's own code cannot bring him in again either: he was referred once.
    bobs = (await engine.coupons.referral_code("d1", "bob", "person-bob")).view.code
    assert (await engine.coupons.claim("d1", "bob", "", code=bobs,
                                       identity="person-bob")).reason == "own_referral"
    carol = await engine.coupons.claim("d1", "carol", "", code=bobs, identity="person-carol")
    assert carol.outcome is Outcome.OK
    assert [c.template for c in await engine.coupons.wallet("bob")] == ["friend", "bonus"]
    stats = await engine.coupons.stats("d1")
    assert stats and stats.totals.face_value_issued == 2 * 200 + 2 * 100


async def test_referral_needs_an_identity_and_another_person(engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop())
    assert (await engine.coupons.referral_code("d1", "ann", None)).reason == "identity_required"
    code = (await engine.coupons.referral_code("d1", "ann", "person-ann")).view.code
    assert (await engine.coupons.claim("d1", "bob", "", code=code)).reason == "identity_required"
    own = await engine.coupons.claim("d1", "ann-alt", "", code=code, identity="person-ann")
    assert (own.outcome, own.reason) == (Outcome.CONFLICT, "own_referral")
    assert (await engine.coupons.claim("d1", "ann", "", code=code,
                                       identity="person-x")).reason == "own_referral"
    await engine.define_campaign("d2", coded_drop(referral=None))
    assert (await engine.coupons.referral_code("d2", "ann", "p")).reason == "no_referral"
    assert (await engine.coupons.referral_code("nope", "ann", "p")).reason == "no_campaign"


async def test_referral_per_referrer_limit_and_reward_stock(engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop(referral={
        "sku": "friend", "referrer_sku": "bonus", "per_referrer": 2}))
    code = (await engine.coupons.referral_code("d1", "ann", "pa")).view.code
    for i in range(2):
        assert (await engine.coupons.claim("d1", f"f{i}", "", code=code,
                                           identity=f"p{i}")).outcome is Outcome.OK
    r = await engine.coupons.claim("d1", "f9", "", code=code, identity="p9")
    assert (r.outcome, r.reason, r.params) == (Outcome.LIMIT_EXCEEDED, "referral_limit",
                                               {"limit": 2})
    # No reward left: the friend gets nothing either (all or nothing).
    await engine.define_campaign("d2", drop_spec(stock=1, templates=TEMPLATES, skus=(
        "friend", "bonus"), referral={"sku": "friend", "referrer_sku": "bonus"}))
    code = (await engine.coupons.referral_code("d2", "ann", "pa")).view.code
    assert (await engine.coupons.claim("d2", "b", "", code=code, identity="pb")).outcome \
        is Outcome.OK
    r = await engine.coupons.claim("d2", "c", "", code=code, identity="pc")
    assert (r.outcome, r.reason) == (Outcome.SOLD_OUT, "stock")
    assert await engine.coupons.wallet("c") == []


async def test_thousands_using_one_promo_code_never_pass_budget_or_user_limit(
        engine: Engine) -> None:
    """2000 claims of one code by 400 users (5 each, limit 2) against 500 units and a
    budget of 450 coupons: exactly what the limits allow is issued, nothing more."""
    await engine.define_campaign("d1", coded_drop(stock=500, budget=450 * 300,
                                                  wrong_codes={"per_hour": 10}))
    users = [f"u{i}" for i in range(400)]
    tries = [u for u in users for _ in range(5)]
    answers = await asyncio.gather(*(engine.coupons.claim("d1", u, "", code="SUMMER25")
                                     for u in tries))
    ok: dict[str, int] = {}
    for u, a in zip(tries, answers, strict=True):
        assert a.outcome in (Outcome.OK, Outcome.LIMIT_EXCEEDED, Outcome.SOLD_OUT), a
        if a.outcome is Outcome.OK:
            ok[u] = ok.get(u, 0) + 1
    assert sum(ok.values()) == 450 and max(ok.values()) <= 2
    stats = await engine.coupons.stats("d1")
    assert stats and stats.totals.face_value_issued == 450 * 300 == stats.budget


async def test_one_person_with_many_accounts_cannot_farm_a_referral(engine: Engine) -> None:
    """A member's second person with 50 accounts (one identity, one device), all at
    once: one friend reward and one referrer reward, no more."""
    await engine.define_campaign("d1", coded_drop())
    code = (await engine.coupons.referral_code("d1", "ann", "person-ann")).view.code
    answers = await asyncio.gather(*(
        engine.coupons.claim("d1", f"sock{i}", "", code=code, identity="person-sock")
        for i in range(50)))
    assert sum(a.outcome is Outcome.OK for a in answers) == 1
    assert {a.reason for a in answers if a.outcome is not Outcome.OK} == {"referral_used"}
    assert len(await engine.coupons.wallet("ann")) == 1
    # The member's own accounts (her identity) get nothing at all.
    mine = await asyncio.gather(*(
        engine.coupons.claim("d1", f"ann{i}", "", code=code, identity="person-ann")
        for i in range(20)))
    assert {a.reason for a in mine} == {"own_referral"}


@pytest.mark.parametrize("qty", [2])
async def test_a_referral_claim_is_one_unit(engine: Engine, qty: int) -> None:
    await engine.define_campaign("d1", coded_drop())
    code = (await engine.coupons.referral_code("d1", "ann", "pa")).view.code
    r = await engine.coupons.claim("d1", "b", "", qty, code=code, identity="pb")
    assert (r.outcome, r.reason) == (Outcome.INVALID, "max_per_claim")


async def test_idempotent_code_claim_answers_again_with_its_sku(engine: Engine) -> None:
    await engine.define_campaign("d1", coded_drop())
    first = await engine.coupons.claim("d1", "a", "", code="SUMMER25", idempotency_key="k")
    again = await engine.coupons.claim("d1", "a", "", code="summer25", idempotency_key="k")
    assert first.outcome is Outcome.OK and again.view == first.view
    assert again.view.sku == "promo"
    other = await engine.coupons.claim("d1", "a", "promo", idempotency_key="k")
    assert other.outcome is Outcome.IDEMPOTENCY_MISMATCH


async def test_many_accounts_on_one_device_are_stopped_by_the_guard(engine: Engine) -> None:
    """Even with a distinct identity each (were the identity provider fooled), accounts
    crowding one device meet the scalper guard's accounts_per_device before the code."""
    from stampede.domain.throttle import ClientSignals
    await engine.define_campaign("d1", drop_spec(
        templates=TEMPLATES, campaign={"throttle": {
            "accounts_per_device": {"challenge_above": 3, "reject_above": 3}}},
        promo_codes={"SUMMER25": {"sku": "promo"}},
        referral={"sku": "friend", "referrer_sku": "bonus"}))
    code = (await engine.coupons.referral_code("d1", "ann", "pa")).view.code
    answers = [await engine.coupons.claim("d1", f"sock{i}", "", code=code, identity=f"p{i}",
                                          client=ClientSignals(device="one-phone"))
               for i in range(10)]
    assert [a.outcome for a in answers[:3]] == [Outcome.OK] * 3
    assert {(a.outcome, a.reason) for a in answers[3:]} == {
        (Outcome.BLOCKED, "accounts_per_device")}
    assert len(await engine.coupons.wallet("ann")) == 3


async def test_a_referrer_at_their_limit_gets_no_reward_and_the_friend_nothing(
        engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(
        templates=TEMPLATES, per_user=1, referral={"sku": "friend", "referrer_sku": "bonus"}))
    code = (await engine.coupons.referral_code("d1", "ann", "pa")).view.code
    assert (await engine.coupons.claim("d1", "b", "", code=code, identity="pb")).outcome \
        is Outcome.OK
    r = await engine.coupons.claim("d1", "c", "", code=code, identity="pc")
    assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "referrer_limit")
    assert await engine.coupons.wallet("c") == []
    assert len(await engine.coupons.wallet("ann")) == 1
