"""Coupon claims on a real server: gates, limits, caps, budget, packs, identity."""

import asyncio

import pytest

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from tests.conftest import campaign_spec
from tests.coupons.helpers import FIVE_OFF, drop_spec


async def test_claim_issues_a_coupon_final_at_once(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(stock=5))
    r = await engine.coupons.claim("d1", "alice", "five")
    assert r.outcome is Outcome.OK, r
    (c,) = r.view.coupons
    assert (c.status, c.kind, c.face_value, c.uses_left) == ("active", "fixed_off", 500, 1)
    assert c.code and len(c.code) == 19
    stats = await engine.stats("d1")
    assert stats and (stats.skus[0].available, stats.skus[0].held, stats.skus[0].sold) == (4, 0, 1)
    claim = await engine.get_claim(r.view.claim_id, "alice")
    assert claim and claim.status == "confirmed"
    wallet = await engine.coupons.wallet("alice")
    assert [w.coupon_id for w in wallet] == [c.coupon_id]
    assert await engine.coupons.wallet("bob") == []


async def test_sale_claims_and_coupon_claims_keep_to_their_campaigns(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec())
    await engine.define_campaign("sale", campaign_spec())
    assert (await engine.claim("d1", "a", "five")).outcome is Outcome.NOT_FOUND
    assert (await engine.coupons.claim("sale", "a", "tee")).outcome is Outcome.NOT_FOUND
    assert (await engine.claim("sale", "a", "tee")).outcome is Outcome.OK


async def test_campaign_gates_apply(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec())
    await engine.patch_campaign("d1", CampaignPatch(state="paused"), "ops")
    assert (await engine.coupons.claim("d1", "a", "five")).outcome is Outcome.PAUSED
    await engine.patch_campaign("d1", CampaignPatch(state="closed"), "ops")
    assert (await engine.coupons.claim("d1", "a", "five")).outcome is Outcome.CLOSED
    soon = drop_spec(campaign={"opens_at": "2099-01-01T00:00:00Z",
                               "closes_at": "2099-02-01T00:00:00Z"})
    await engine.define_campaign("d2", soon)
    assert (await engine.coupons.claim("d2", "a", "five")).outcome is Outcome.NOT_OPEN
    room = drop_spec(campaign={"waiting_room": {"rate_per_s": 1000}})
    await engine.define_campaign("d3", room)
    assert (await engine.coupons.claim("d3", "a", "five")).outcome is Outcome.ADMISSION_REQUIRED


async def test_idempotent_claim_answers_the_first_answer(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(stock=1))
    first = await engine.coupons.claim("d1", "a", "five", idempotency_key="k")
    again = await engine.coupons.claim("d1", "a", "five", idempotency_key="k")
    assert first.outcome is Outcome.OK and again.view == first.view
    assert (await engine.coupons.claim("d1", "a", "five", 2, idempotency_key="k")).outcome \
        is Outcome.IDEMPOTENCY_MISMATCH
    assert (await engine.coupons.claim("d1", "b", "five")).outcome is Outcome.SOLD_OUT


async def test_gift_pack_issues_every_coupon_or_none(engine: Engine) -> None:
    templates = {"five": FIVE_OFF, "coffee": {"kind": "exchange", "face_value": 300,
                                              "item": "latte", "valid_days": 7}}
    spec = drop_spec(stock=10, templates=templates, packs={"pack": ["five", "five", "coffee"]},
                     skus=("pack",), budget=1300 * 2)
    await engine.define_campaign("d1", spec)
    r = await engine.coupons.claim("d1", "a", "pack")
    assert r.outcome is Outcome.OK
    assert sorted(c.template for c in r.view.coupons) == ["coffee", "five", "five"]
    assert (await engine.coupons.claim("d1", "b", "pack", 2)).outcome is Outcome.SOLD_OUT
    assert (await engine.coupons.claim("d1", "b", "pack")).outcome is Outcome.OK
    assert (await engine.coupons.claim("d1", "c", "pack")).reason == "budget"
    assert len(await engine.coupons.wallet("b")) == 3
    stats = await engine.coupons.stats("d1")
    assert stats and (stats.totals.issued, stats.totals.face_value_issued) == (6, 2600)
    assert stats.budget_left == 0


async def test_per_person_needs_an_identity(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(per_person=1))
    assert (await engine.coupons.claim("d1", "a", "five")).reason == "identity_required"
    assert (await engine.coupons.claim("d1", "a", "five", identity="h1")).outcome is Outcome.OK
    refused = await engine.coupons.claim("d1", "a2", "five", identity="h1")
    assert (refused.outcome, refused.reason) == (Outcome.LIMIT_EXCEEDED, "person")
    assert (await engine.coupons.claim("d1", "b", "five", identity="h2")).outcome is Outcome.OK


async def _hammer(engine: Engine, cid: str, users: list[str], **kw: object) -> list[object]:
    return list(await asyncio.gather(*(engine.coupons.claim(cid, u, "five", **kw)  # type: ignore[arg-type]
                                       for u in users)))


@pytest.mark.parametrize("cap", ["stock", "per_day", "budget"])
async def test_concurrent_claims_never_pass_a_total_cap(engine: Engine, cap: str) -> None:
    caps = {"stock": {"stock": 37}, "per_day": {"per_day": 37},
            "budget": {"budget": 37 * 500}}[cap]
    await engine.define_campaign("d1", drop_spec(**{"stock": 1000, **caps}))
    results = await _hammer(engine, "d1", [f"u{i}" for i in range(300)])
    ok = [r for r in results if r.outcome is Outcome.OK]  # type: ignore[attr-defined]
    assert len(ok) == 37
    assert {r.reason for r in results if r.outcome is not Outcome.OK} == {cap}  # type: ignore[attr-defined]
    stats = await engine.coupons.stats("d1")
    assert stats and stats.totals.issued == 37 and stats.totals.face_value_issued == 37 * 500


@pytest.mark.parametrize("cap", ["per_user", "per_user_per_day"])
async def test_concurrent_claims_of_one_user_stop_at_the_limit(engine: Engine, cap: str) -> None:
    spec = drop_spec(per_user=3) if cap == "per_user" else drop_spec(per_user_per_day=3)
    await engine.define_campaign("d1", spec)
    results = await _hammer(engine, "d1", ["alice"] * 50 + ["bob"] * 50)
    for user in ("alice", "bob"):
        assert len(await engine.coupons.wallet(user)) == 3
    assert sum(r.outcome is Outcome.OK for r in results) == 6  # type: ignore[attr-defined]


async def test_bad_drops_are_refused(engine: Engine) -> None:
    from stampede.errors import ValidationError
    bad = [{"five": {"kind": "percent_off", "face_value": 1, "valid_days": 1}},
           {"five": {"kind": "fixed_off", "face_value": 1}},
           {"five": {"kind": "exchange", "face_value": 1, "valid_days": 1}},
           {"five": {"kind": "fixed_off", "face_value": 1, "valid_days": 1, "uses": 3}}]
    for templates in bad:
        with pytest.raises(ValidationError):
            await engine.define_campaign("d1", drop_spec(templates=templates))
    with pytest.raises(ValidationError):
        await engine.define_campaign("d1", drop_spec(skus=("five", "other")))


async def test_a_retried_batch_answers_again_without_issuing_twice(engine: Engine) -> None:
    """redis-py retries a call whose reply was lost: the same claim ids find their coupons."""
    from stampede.domain.coupons.codes import new_seed
    from stampede.domain.coupons.service import _PendingCouponClaim
    from stampede.state import keys

    await engine.define_campaign("d1", drop_spec(stock=10, packs={"pack": ["five", "five"]}))
    batch = [_PendingCouponClaim(keys.new_claim_id("d1"), f"u{i}", "pack", 1, None, -1, "",
                                 new_seed()) for i in range(3)]
    first = await engine.coupons._claim_batch("d1", batch)
    again = await engine.coupons._claim_batch("d1", batch)
    assert [a.view for a in again] == [a.view for a in first]
    assert all(len(a.view.coupons) == 2 for a in first)
    stats = await engine.coupons.stats("d1")
    assert stats and stats.totals.issued == 6
    sale = await engine.stats("d1")
    assert sale and {s.sku: s.sold for s in sale.skus} == {"five": 0, "pack": 3}


async def test_one_claim_issues_at_most_a_hundred_coupons(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(packs={"big": ["five"] * 20}, skus=("big",)))
    assert (await engine.coupons.claim("d1", "a", "big", 6)).outcome is Outcome.INVALID
    r = await engine.coupons.claim("d1", "a", "big", 5)
    assert r.outcome is Outcome.OK and len(r.view.coupons) == 100


async def test_waiting_room_admission_lets_a_coupon_claim_through(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(campaign={"waiting_room": {"rate_per_s": 1000,
                                                                           "burst": 10}}))
    _, ticket, _ = await engine.take_ticket("d1", "alice")
    _, ticket = await engine.ticket("d1", "alice")
    assert ticket and ticket.admission_token
    assert (await engine.coupons.claim("d1", "bob", "five", admission_token=ticket.admission_token)
            ).outcome is Outcome.ADMISSION_REQUIRED  # another user's token
    r = await engine.coupons.claim("d1", "alice", "five", admission_token=ticket.admission_token)
    assert r.outcome is Outcome.OK
    again = await engine.coupons.claim("d1", "alice", "five",
                                       admission_token=ticket.admission_token)
    assert again.outcome is Outcome.ADMISSION_REQUIRED  # the claim used the turn
