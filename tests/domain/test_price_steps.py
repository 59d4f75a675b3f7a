"""Presale price steps against a real Valkey: by time, units sold and tier, decided in
the claim script, locked into the hold, carried through confirm, summed as revenue."""

from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch, CampaignSpec
from stampede.errors import ValidationError
from stampede.state import keys, records
from tests.conftest import iso
from tests.coupons.helpers import drop_spec


def _priced(steps: list[dict[str, Any]], stock: int = 100) -> CampaignSpec:
    """An open sale of one SKU at 10,000 with these price steps."""
    return msgspec.convert({
        "name": "priced", "opens_at": iso(-60), "closes_at": iso(3600),
        "skus": [{"sku": "tee", "price": 10_000, "price_steps": steps,
                  "waves": [{"at": iso(-30), "qty": stock}]}]}, CampaignSpec)


async def _price(engine: Engine, cid: str, user: str, qty: int = 1,
                 tiers: tuple[str, ...] = ()) -> int:
    r = await engine.claim(cid, user, "tee", qty, tiers=tiers)
    assert r.outcome is Outcome.OK and r.claim and r.claim.price is not None
    return r.claim.price


async def test_units_then_time_then_tier_then_base(engine: Engine) -> None:
    steps = [{"price": 5_000, "tiers": ["member"], "first_units": 4},
             {"price": 6_000, "first_units": 3},
             {"price": 8_000, "until": iso(100)},
             {"price": 9_000, "tiers": ["member"]}]
    await engine.define_campaign("ps1", _priced(steps))
    assert await _price(engine, "ps1", "a", 2) == 6_000  # units 1-2
    assert await _price(engine, "ps1", "b", 2) == 8_000  # 3-4 crosses 3: early bird
    assert await _price(engine, "ps1", "m", 1, ("member",)) == 8_000  # 5 > 4
    await engine.set_clock_offset("ps1", 101_000)
    assert await _price(engine, "ps1", "c") == 10_000
    assert await _price(engine, "ps1", "n", 1, ("x", "member")) == 9_000


async def test_the_locked_price_goes_through_confirm_into_revenue(engine: Engine) -> None:
    await engine.define_campaign("ps2", _priced([{"price": 7_000, "first_units": 2}]))
    first = await engine.claim("ps2", "a", "tee", 2)
    second = await engine.claim("ps2", "b", "tee", 1)
    assert first.claim and second.claim
    assert (first.claim.price, second.claim.price) == (7_000, 10_000)
    # Each confirm keeps the price its hold locked in, whatever the steps say by then.
    for r, user in ((first, "a"), (second, "b")):
        assert r.claim
        done = await engine.confirm(r.claim.claim_id, user)
        assert done.outcome is Outcome.OK and done.claim and done.claim.price == r.claim.price
    stats = await engine.stats("ps2")
    assert stats and stats.skus[0].revenue == 2 * 7_000 + 10_000
    stored = await engine.redis.hgetall(keys.campaign_keys("ps2").claims)
    assert sorted(records.CLAIM.decode(v).price for v in stored.values()) == [7_000, 10_000]
    events = await engine.redis.xrange(keys.events_key("ps2"))
    assert sorted(e[1]["price"] for e in events if e[1]["type"] == "claim_confirmed") == \
        ["10000", "7000"]


@pytest.mark.parametrize(("steps", "field"), [
    ([{"price": 1}, {"price": 2, "until": 100}], "skus[0].price_steps[0]"),
    ([{"price": 1, "until": 200}, {"price": 2, "until": 100}],
     "skus[0].price_steps[1].until"),
    ([{"price": 1, "first_units": 50}, {"price": 2, "first_units": 50}],
     "skus[0].price_steps[1].first_units"),
    ([{"price": 1, "until": -600}], "skus[0].price_steps[0].until"),
])
async def test_steps_out_of_order_are_refused_naming_the_field(
        engine: Engine, steps: list[dict[str, Any]], field: str) -> None:
    # `until` is given in seconds from now and made a time here, when the test runs:
    # a time fixed at collection would age while the suite runs the tests before it.
    steps = [{**s, "until": iso(s["until"])} if "until" in s else s for s in steps]
    with pytest.raises(ValidationError) as info:
        await engine.define_campaign("bad", _priced(steps))
    assert field in str(info.value)
    assert not await engine.redis.exists(keys.campaign_keys("bad").meta)


async def test_price_steps_are_patched_live_and_holds_keep_their_price(
        engine: Engine) -> None:
    await engine.define_campaign("ps9", _priced([{"price": 7_000, "first_units": 10}]))
    early = await engine.claim("ps9", "a", "tee", 1)
    assert early.claim and early.claim.price == 7_000
    patch = msgspec.convert({"price_steps": {"tee": [{"price": 8_000, "tiers": ["vip"]},
                                                     {"price": 9_000, "first_units": 50}]}},
                            CampaignPatch)
    assert await engine.patch_campaign("ps9", patch, "ops") is Outcome.OK
    assert await _price(engine, "ps9", "b") == 9_000  # the next claim: the new steps
    assert await _price(engine, "ps9", "v", 1, ("vip",)) == 8_000
    done = await engine.confirm(early.claim.claim_id, "a")  # the hold keeps its price
    assert done.claim and done.claim.price == 7_000
    events = [e for _, e in await engine.redis.xrange(keys.events_key("ps9"))
              if e["type"] == "campaign_patched"]
    assert "ps:tee" in events[-1]["after"] and "7000@" in events[-1]["before"]
    off = msgspec.convert({"price_steps": {"tee": []}}, CampaignPatch)
    assert await engine.patch_campaign("ps9", off, "ops") is Outcome.OK
    assert await _price(engine, "ps9", "c") == 10_000  # [] removes them: the base price


@pytest.mark.parametrize(("steps", "field"), [
    ([{"price": 1, "first_units": 5}, {"price": 2, "first_units": 5}],
     "price_steps.tee[1].first_units"),
    ([{"price": 1, "until": 200}, {"price": 2, "until": 100}], "price_steps.tee[1].until"),
    ([{"price": 1}, {"price": 2, "first_units": 5}], "price_steps.tee[0]"),
    ([{"price": 1, "until": -3600}], "price_steps.tee[0].until"),
])
async def test_a_bad_price_steps_patch_names_the_field_and_changes_nothing(
        engine: Engine, steps: list[dict[str, Any]], field: str) -> None:
    # `until` as seconds from now, made when the test runs (not when it is collected)
    steps = [{**s, "until": iso(s["until"])} if "until" in s else s for s in steps]
    await engine.define_campaign("ps10", _priced([{"price": 7_000, "first_units": 10}]))
    before = await engine.redis.hgetall(keys.campaign_keys("ps10").stock)
    patch = msgspec.convert({"price_steps": {"tee": steps}}, CampaignPatch)
    with pytest.raises(ValidationError, match=field.replace("[", r"\[").replace("]", r"\]")):
        await engine.patch_campaign("ps10", patch, "ops")
    assert await engine.redis.hgetall(keys.campaign_keys("ps10").stock) == before
    unknown = msgspec.convert({"price_steps": {"hat": []}}, CampaignPatch)
    assert await engine.patch_campaign("ps10", unknown, "ops") is Outcome.NOT_FOUND


async def test_a_coupon_drop_takes_no_price_steps_patch(engine: Engine) -> None:
    await engine.define_campaign("ps11", drop_spec())
    patch = msgspec.convert({"price_steps": {"five": [{"price": 1}]}}, CampaignPatch)
    with pytest.raises(ValidationError, match="price_steps: a coupon drop"):
        await engine.patch_campaign("ps11", patch, "ops")
