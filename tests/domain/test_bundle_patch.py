"""Presale bundles patched live against a real Valkey: PATCH campaign adds, replaces and
removes bundles for the next claim, a hold keeps the lines and prices it was taken
with, a bad definition changes nothing, and bundle claims racing a patch are each held
whole by one definition or the other, never overselling."""

import asyncio
import random
from collections import Counter
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.bundles import decode as bundles_of
from stampede.domain.models import CampaignPatch
from stampede.errors import ValidationError
from stampede.state import keys
from tests.coupons.helpers import drop_spec
from tests.domain.test_bundles import _stock, bundle_spec


def _patch(bundles: dict[str, Any], **extra: Any) -> CampaignPatch:
    return msgspec.convert({"bundles": bundles, **extra}, CampaignPatch)


async def _patches(engine: Engine, cid: str) -> list[dict[str, Any]]:
    events = await engine.redis.xrange(keys.events_key(cid))
    return [e[1] for e in events if e[1]["type"] == "campaign_patched"]


async def test_bundles_are_added_replaced_and_removed_for_the_next_claim(
        engine: Engine) -> None:
    await engine.define_campaign("bp1", bundle_spec())
    held = await engine.claim_bundle("bp1", "u1", bundle="fan")
    assert held.outcome is Outcome.OK and held.claim and held.claim.price == 7000
    # fan now takes a cap instead of a tee, at a new tkt price; a new bundle appears
    patch = _patch({"fan": {"lines": [{"sku": "tkt", "qty": 1}, {"sku": "cap", "qty": 2}]},
                    "duo": {"lines": [{"sku": "tkt", "qty": 2}]}},
                   price_steps={"tkt": [{"price": 4000}]})
    assert await engine.patch_campaign("bp1", patch, "ops") is Outcome.OK
    r = await engine.claim_bundle("bp1", "u2", bundle="fan")
    assert r.outcome is Outcome.OK and r.claim and r.claim.lines
    assert [(x.sku, x.qty, x.price) for x in r.claim.lines] == [("tkt", 1, 4000),
                                                                ("cap", 2, 900)]
    duo = await engine.claim_bundle("bp1", "u3", bundle="duo")
    assert duo.outcome is Outcome.OK and duo.claim and duo.claim.price == 8000
    # The hold taken before keeps its lines and prices through confirm.
    assert held.claim
    done = await engine.confirm(held.claim.claim_id, "u1")
    assert done.outcome is Outcome.OK and done.claim and done.claim.lines
    assert [(x.sku, x.qty, x.price, x.status) for x in done.claim.lines] == \
        [("tkt", 1, 5000, "confirmed"), ("tee", 1, 2000, "confirmed")]
    assert done.claim.price == 7000
    # null removes a bundle: its claims are 404 from the next one; the others stay
    assert await engine.patch_campaign("bp1", _patch({"fan": None}), "ops") is Outcome.OK
    gone = await engine.claim_bundle("bp1", "u4", bundle="fan")
    assert gone.outcome is Outcome.NOT_FOUND
    assert (await engine.claim_bundle("bp1", "u4", bundle="duo")).outcome is Outcome.OK
    # removing one that is not there changes nothing (a retried PATCH succeeds)
    assert await engine.patch_campaign("bp1", _patch({"fan": None}), "ops") is Outcome.OK
    assert await engine.redis.hget(keys.campaign_keys("bp1").meta, "bd") == "duo=tkt:2"
    # each change is a campaign_patched event with the bundles before and after
    changes = [msgspec.json.decode(p["after"]) for p in await _patches(engine, "bp1")]
    bundle_changes = [c["bd"] for c in changes if "bd" in c]
    assert bundle_changes == ["fan=tkt:1,cap:2;duo=tkt:2", "duo=tkt:2", "duo=tkt:2"]
    first = msgspec.json.decode((await _patches(engine, "bp1"))[0]["before"])
    assert first["bd"] == "fan=tkt:1,tee:1"


@pytest.mark.parametrize(("bundles", "field"), [
    ({"fan": {"lines": [{"sku": "tkt"}, {"sku": "shirt"}]}},
     "bundles.fan.lines[1].sku: the campaign has no SKU 'shirt'"),
    ({"new": {"lines": [{"sku": "tkt", "qty": 5}]}},
     "bundles.new.lines[0].qty: 5 is over the campaign's max_per_claim of 4"),
    ({"new": {"lines": [{"sku": "tee"}, {"sku": "tee", "qty": 2}]}},
     "bundles.new.lines[1].sku: SKU 'tee' is listed twice"),
])
async def test_a_bad_bundle_patch_is_refused_naming_the_field_and_changes_nothing(
        engine: Engine, bundles: dict[str, Any], field: str) -> None:
    await engine.define_campaign("bp2", bundle_spec())
    meta = keys.campaign_keys("bp2").meta
    before = await engine.redis.hmget(meta, "bd", "hold_ttl_ms")
    # a valid change in the same PATCH is not made either
    with pytest.raises(ValidationError) as info:
        await engine.patch_campaign("bp2", _patch(bundles, hold_ttl_s=30), "ops")
    assert str(info.value).startswith(field)
    assert await engine.redis.hmget(meta, "bd", "hold_ttl_ms") == before
    assert await _patches(engine, "bp2") == []


async def test_a_lower_max_per_claim_in_the_same_patch_is_checked(engine: Engine) -> None:
    await engine.define_campaign("bp3", bundle_spec())
    with pytest.raises(ValidationError, match=r"bundles.fan.lines\[0\].qty: 3 is over the "
                                              "campaign's max_per_claim of 2"):
        await engine.patch_campaign("bp3", _patch(
            {"fan": {"lines": [{"sku": "tkt", "qty": 3}]}}, limits={"max_per_claim": 2}),
            "ops")


@pytest.mark.parametrize(("patch", "message"), [
    ({"limits": {"max_per_claim": 1}},
     "limits.max_per_claim: bundle 'fan' takes 2 units of SKU 'cap' in one line, more than "
     "the campaign's max_per_claim of 1"),
    ({"sku_limits": {"tkt": 1}},
     "sku_limits.tkt: bundle 'duo' takes 2 units of SKU 'tkt', more than that SKU's "
     "per-user limit of 1"),
    ({"sku_limits": {"tee": None, "cap": 1}},
     "sku_limits.cap: bundle 'fan' takes 2 units of SKU 'cap', more than that SKU's "
     "per-user limit of 1"),
    ({"limits": {"per_user": 2}},
     "limits.per_user: bundle 'fan' takes 3 units, more than the campaign's per-user "
     "limit of 2"),
    # a bundle changed in the same PATCH is checked against the limit in force
    ({"bundles": {"duo": {"lines": [{"sku": "tee", "qty": 3}]}}},
     "bundles.duo: bundle 'duo' takes 3 units of SKU 'tee', more than that SKU's per-user "
     "limit of 2"),
])
async def test_a_limit_patched_below_a_bundle_in_force_is_refused(
        engine: Engine, patch: dict[str, Any], message: str) -> None:
    """A PATCH that would leave a defined bundle no claim could pass (a line over
    max_per_claim or its SKU's per-user limit, the whole over the per-user limit) is
    refused naming the limit and the bundle, and nothing of it changes."""
    await engine.define_campaign("bp5", bundle_spec(per_user=4, bundles={
        "fan": {"lines": [{"sku": "tkt", "qty": 1}, {"sku": "cap", "qty": 2}]},
        "duo": {"lines": [{"sku": "tkt", "qty": 2}]}}))
    ck = keys.campaign_keys("bp5")
    before = (await engine.redis.hgetall(ck.meta), await engine.redis.hgetall(ck.stock))
    with pytest.raises(ValidationError) as info:
        await engine.patch_campaign("bp5", msgspec.convert({**patch, "hold_ttl_s": 30},
                                                           CampaignPatch), "ops")
    assert str(info.value).startswith(message), str(info.value)
    assert (await engine.redis.hgetall(ck.meta), await engine.redis.hgetall(ck.stock)) == \
        before
    assert await _patches(engine, "bp5") == []
    # Changing the bundles with the limit, in one PATCH, is accepted.
    fixed = {**patch, "bundles": {"fan": None, "duo": None}}
    assert await engine.patch_campaign("bp5", msgspec.convert(fixed, CampaignPatch),
                                       "ops") is Outcome.OK


async def test_a_spec_bundle_over_a_per_user_limit_is_refused_when_defined(
        engine: Engine) -> None:
    over_user = bundle_spec(per_user=1)
    with pytest.raises(ValidationError, match=r"^bundles.fan: the bundle takes 2 units, "
                                              "more than the campaign's per_user limit of 1"):
        await engine.define_campaign("bp6", over_user)
    over_sku = bundle_spec(bundles={"fan": {"lines": [{"sku": "tee", "qty": 3}]}})
    with pytest.raises(ValidationError, match=r"^bundles.fan.lines\[0\].qty: 3 is over SKU "
                                              "'tee''s per-user limit of 2"):
        await engine.define_campaign("bp6", over_sku)
    assert not await engine.redis.exists(keys.campaign_keys("bp6").meta)


async def test_no_bundles_for_a_coupon_drop_or_a_sharded_campaign(engine: Engine) -> None:
    await engine.define_campaign("bpd", drop_spec())
    one = {"x": {"lines": [{"sku": "five"}]}}
    with pytest.raises(ValidationError, match="^bundles: a coupon drop"):
        await engine.patch_campaign("bpd", _patch(one), "ops")
    await engine.define_campaign("bps", msgspec.structs.replace(bundle_spec(shards=2),
                                                                bundles={}))
    with pytest.raises(ValidationError, match="^bundles: "):
        await engine.patch_campaign("bps", _patch({"x": {"lines": [{"sku": "tkt"}]}}), "ops")
    assert await engine.patch_campaign("nope", _patch(one), "ops") is Outcome.NOT_FOUND


async def test_bundle_claims_racing_patches_are_whole_and_never_oversell(
        engine: Engine) -> None:
    """Hundreds of bundle claims while the bundle flips between two definitions: each
    bundle is held whole, as one definition or the other, and no SKU oversells."""
    await engine.define_campaign("bp4", bundle_spec(stock=450, merch=120))
    shapes = {"a": [{"sku": "tkt", "qty": 1}, {"sku": "tee", "qty": 1}],
              "b": [{"sku": "tkt", "qty": 2}, {"sku": "cap", "qty": 1}]}
    rng = random.Random(15)

    async def claimant(i: int) -> Any:
        await asyncio.sleep(rng.random() / 5)
        return await engine.claim_bundle("bp4", f"u{i}", bundle="fan")

    async def operator() -> None:
        for k in range(60):
            await asyncio.sleep(0.004)
            assert await engine.patch_campaign(
                "bp4", _patch({"fan": {"lines": shapes["ab"[k % 2]]}}), "ops") is Outcome.OK

    results = await asyncio.gather(operator(), *(claimant(i) for i in range(300)))
    held = [r for r in results[1:] if r.outcome is Outcome.OK]
    outcomes = Counter(r.outcome for r in results[1:])
    assert set(outcomes) <= {Outcome.OK, Outcome.SOLD_OUT}, outcomes
    seen: Counter[str] = Counter()
    taken: Counter[str] = Counter()
    for r in held:
        assert r.claim and r.claim.lines
        got = [{"sku": x.sku, "qty": x.qty} for x in r.claim.lines]
        shape = next(name for name, lines in shapes.items() if got == lines)
        seen[shape] += 1
        for x in r.claim.lines:
            taken[x.sku] += x.qty
    # both definitions were in force at times, and the merchandise ran out
    assert seen["a"] > 20 and seen["b"] > 20 and outcomes[Outcome.SOLD_OUT] > 0, outcomes
    stock = await _stock(engine, "bp4")
    assert stock == {"tkt": (450 - taken["tkt"], taken["tkt"], 0),
                     "tee": (120 - taken["tee"], taken["tee"], 0),
                     "cap": (120 - taken["cap"], taken["cap"], 0)}
    assert all(a >= 0 for a, _, _ in stock.values())
    # a refused claim held nothing: every hold in the claims hash is a held line
    claims = await engine.redis.hlen(keys.campaign_keys("bp4").claims)
    assert claims == sum(len(r.claim.lines) for r in held if r.claim and r.claim.lines)


async def test_at_most_64_bundles_in_force(engine: Engine) -> None:
    await engine.define_campaign("bp5", bundle_spec())  # "fan"
    many = {f"b{i}": {"lines": [{"sku": "cap"}]} for i in range(64)}
    with pytest.raises(ValidationError, match="^bundles: a campaign has at most 64"):
        await engine.patch_campaign("bp5", _patch(many), "ops")
    assert await engine.patch_campaign("bp5", _patch({**many, "b63": None}), "ops") is \
        Outcome.OK  # the 64th bundle taken back: 64 in force, with fan
    in_force = bundles_of(await engine.redis.hget(keys.campaign_keys("bp5").meta, "bd"))
    assert len(in_force) == 64 and "fan" in in_force and "b63" not in in_force
