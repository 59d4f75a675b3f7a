"""Real-name one per person for sale claims against a real Valkey: the `per_person` limit
counts the units of the credential's identity (`idh`) across accounts, in the claim
script; a release gives them back; concurrent claims of many accounts of one person
never pass it."""

import asyncio
from collections import Counter

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.models import CampaignSpec
from stampede.errors import ValidationError
from stampede.state import keys, records
from tests.conftest import campaign_spec


def per_person_spec(limit: int, stock: int = 100, **extra: object) -> CampaignSpec:
    spec = campaign_spec(stock=stock, per_user=None, **extra)
    return msgspec.structs.replace(
        spec, limits=msgspec.structs.replace(spec.limits, per_person=limit))


async def test_a_person_is_limited_across_accounts(engine: Engine) -> None:
    await engine.define_campaign("pp1", per_person_spec(3))
    assert (await engine.claim("pp1", "ann", "tee", 2, identity="h-ann")).outcome is Outcome.OK
    # ann's second account is the same person: 2 + 2 > 3
    over = await engine.claim("pp1", "ann2", "tee", 2, identity="h-ann")
    assert (over.outcome, over.reason, over.params) == \
        (Outcome.LIMIT_EXCEEDED, "per_person", {"limit": 3, "held": 2})
    assert (await engine.claim("pp1", "ann2", "tee", 1, identity="h-ann")).outcome is Outcome.OK
    assert (await engine.claim("pp1", "bob", "tee", 3, identity="h-bob")).outcome is Outcome.OK
    stats = await engine.stats("pp1")
    assert stats and stats.skus[0].held == 6


async def test_a_claim_without_an_identity_is_refused_unchanged(engine: Engine) -> None:
    await engine.define_campaign("pp2", per_person_spec(1))
    r = await engine.claim("pp2", "ann", "tee")
    assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "person_required")
    stats = await engine.stats("pp2")
    assert stats and stats.skus[0].held == 0
    with pytest.raises(ValidationError, match="identity"):
        await engine.claim("pp2", "ann", "tee", identity="a|b")
    # A campaign without the limit ignores identities.
    await engine.define_campaign("pp3", campaign_spec(per_user=None))
    assert (await engine.claim("pp3", "ann", "tee")).outcome is Outcome.OK
    users = await engine.redis.hgetall(keys.campaign_keys("pp3").users)
    assert not any(f.startswith("~") for f in users)


async def test_a_release_gives_the_person_their_units_back(engine: Engine) -> None:
    await engine.define_campaign("pp4", per_person_spec(1))
    held = await engine.claim("pp4", "ann", "tee", identity="h1")
    assert held.claim
    assert (await engine.claim("pp4", "ann2", "tee", identity="h1")).outcome is \
        Outcome.LIMIT_EXCEEDED
    assert (await engine.cancel(held.claim.claim_id, "ann")).outcome is Outcome.OK
    again = await engine.claim("pp4", "ann2", "tee", identity="h1")
    assert again.outcome is Outcome.OK and again.claim
    # A confirmed claim keeps counting; an expired hold does not.
    assert (await engine.confirm(again.claim.claim_id, "ann2")).outcome is Outcome.OK
    assert (await engine.claim("pp4", "ann3", "tee", identity="h1")).outcome is \
        Outcome.LIMIT_EXCEEDED
    await engine.define_campaign("pp5", per_person_spec(1, hold_ttl_s=1))
    assert (await engine.claim("pp5", "bob", "tee", identity="h2")).outcome is Outcome.OK
    await engine.set_clock_offset("pp5", 2_000)
    assert (await engine.claim("pp5", "bob2", "tee", identity="h2")).outcome is Outcome.OK
    users = await engine.redis.hgetall(keys.campaign_keys("pp5").users)
    stored = await engine.redis.hgetall(keys.campaign_keys("pp5").claims)
    assert users["~p|h2"] == "1"  # the lapsed hold gave its unit back, once
    assert sorted((c.status, c.person) for c in map(records.CLAIM.decode, stored.values())) \
        == [("expired", "h2"), ("held", "h2")]  # each record names the person it counts to


async def test_the_spec_names_the_field_at_fault(engine: Engine) -> None:
    with pytest.raises(ValidationError, match=r"limits\.per_person.*waitlist"):
        await engine.define_campaign("pp6", per_person_spec(1, waitlist={}))
    with pytest.raises(msgspec.ValidationError, match=r"limits\.per_person"):
        msgspec.convert({"name": "x", "opens_at": "2030-01-01T00:00:00Z",
                         "closes_at": "2030-01-02T00:00:00Z",
                         "skus": [{"sku": "tee", "price": 1}],
                         "limits": {"per_person": 0}}, CampaignSpec)
    assert await engine.stats("pp6") is None
    # A redefinition without the limit (no claims yet) drops it.
    await engine.define_campaign("pp6", per_person_spec(1))
    await engine.define_campaign("pp6", campaign_spec(per_user=None))
    assert (await engine.claim("pp6", "ann", "tee")).outcome is Outcome.OK


async def test_concurrent_claims_of_many_accounts_never_pass_a_person(engine: Engine) -> None:
    """3000 claims of 600 accounts of 100 people (limit 2 each) race for 500 units."""
    await engine.define_campaign("pp7", per_person_spec(2, stock=500))
    people = {f"u{i}": f"h{i % 100}" for i in range(600)}
    tasks = [engine.claim("pp7", user, "tee", identity=person)
             for _ in range(5) for user, person in people.items()]
    results = await asyncio.gather(*tasks)
    took: Counter[str] = Counter()
    for (_, person), r in zip([*people.items()] * 5, results, strict=True):
        if r.outcome is Outcome.OK:
            took[person] += 1
        else:
            assert (r.outcome, r.reason) == (Outcome.LIMIT_EXCEEDED, "per_person")
    assert set(took.values()) == {2} and len(took) == 100  # 200 of 500 units: no sell-out
    stats = await engine.stats("pp7")
    assert stats and stats.skus[0].held == 200 and stats.skus[0].available == 300
    users = await engine.redis.hgetall(keys.campaign_keys("pp7").users)
    assert {users[f"~p|h{i}"] for i in range(100)} == {"2"}
