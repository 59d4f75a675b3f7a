"""Presale allocations patched live against a real Valkey: PATCH campaign replaces a
SKU's allocations for the next claim (a listed one keeps what was taken from it, a new
one reserves its qty, one left out returns to the shared pool); bad lists change
nothing; thousands of claims racing the patches never oversell nor take another
channel's units."""

import asyncio
import random
from collections import Counter
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from stampede.errors import ValidationError
from stampede.state import keys, records
from tests.coupons.helpers import drop_spec
from tests.domain.test_allocations import _meta, allocated_spec


def _patch(allocs: dict[str, list[dict[str, Any]]], **extra: Any) -> CampaignPatch:
    return msgspec.convert({"allocations": allocs, **extra}, CampaignPatch)


APP = {"name": "app", "qty": 4, "channels": ["app"]}
WEB = {"name": "web", "qty": 3, "channels": ["web"]}


async def test_allocations_are_replaced_for_the_next_claim(engine: Engine) -> None:
    await engine.define_campaign("ap1", allocated_spec([APP, WEB], stock=20))  # 13 shared
    assert (await engine.claim("ap1", "u1", "tkt", 3, channel="app")).outcome is Outcome.OK
    assert await _meta(engine, "ap1", "app", "web") == [1, 3]
    # app grows to 6 (3 taken: 3 reserved), web is left out (returned), partner is new
    partner = {"name": "partner", "qty": 5, "channels": ["partner"]}
    patch = _patch({"tkt": [{**APP, "qty": 6}, partner]})
    assert await engine.patch_campaign("ap1", patch, "ops") is Outcome.OK
    assert await _meta(engine, "ap1", "app", "web", "partner") == [3, -1, 5]
    stats = await engine.stats("ap1")
    assert stats and [(a.name, a.reserved, a.returned) for a in stats.skus[0].allocations] \
        == [("app", 3, False), ("partner", 5, False)]
    events = await engine.redis.xrange(keys.events_key("ap1"))
    assert [(e["allocation"], e["qty"], e["by"]) for _, e in events
            if e["type"] == "allocation_returned"] == [("web", "3", "patch")]
    patched = [msgspec.json.decode(e["after"]) for _, e in events
               if e["type"] == "campaign_patched"]
    assert patched[-1]["alq:tkt"] == "app:6,partner:5"
    # 17 available: 8 reserved, 9 shared; web claims now take only the shared pool
    assert (await engine.claim("ap1", "u2", "tkt", 10, channel="web")).outcome is \
        Outcome.SOLD_OUT
    assert (await engine.claim("ap1", "u2", "tkt", 9, channel="web")).outcome is Outcome.OK
    assert (await engine.claim("ap1", "u3", "tkt", 5, channel="partner")).outcome is Outcome.OK
    assert await _meta(engine, "ap1", "partner") == [0]
    # a hold of the returned allocation gives its units to the shared pool on release
    # and a returned one listed again stays returned
    again = _patch({"tkt": [{**APP, "qty": 3}, WEB, partner]})
    assert await engine.patch_campaign("ap1", again, "ops") is Outcome.OK
    assert await _meta(engine, "ap1", "app", "web", "partner") == [0, -1, 0]
    # [] removes them all: every reserved unit joins the shared pool
    assert await engine.patch_campaign("ap1", _patch({"tkt": []}), "ops") is Outcome.OK
    stats = await engine.stats("ap1")
    assert stats and stats.skus[0].allocations == [] and stats.skus[0].available == 3


@pytest.mark.parametrize(("allocs", "message"), [
    ([{**APP, "qty": 2}], r"allocations.tkt\[0\].qty: holds and sales took 3 units"),
    ([APP, {**WEB, "qty": 7}], r"allocations.tkt: the allocations would reserve 8 units, "
                               r"more than the 7 units SKU 'tkt' has available"),
    ([APP, {**WEB, "name": "app"}], r"allocations.tkt\[1\].name: 'app' is listed twice"),
    ([{"name": "x", "qty": 1}], r"allocations.tkt\[0\]: an allocation names channels"),
])
async def test_a_bad_allocation_patch_names_the_field_and_changes_nothing(
        engine: Engine, allocs: list[dict[str, Any]], message: str) -> None:
    await engine.define_campaign("ap2", allocated_spec([APP, WEB]))  # 10 units
    assert (await engine.claim("ap2", "u1", "tkt", 3, channel="app")).outcome is Outcome.OK
    meta = keys.campaign_keys("ap2").meta
    before = await engine.redis.hgetall(meta)
    with pytest.raises(ValidationError, match=message):
        await engine.patch_campaign("ap2", _patch({"tkt": allocs}, hold_ttl_s=30), "ops")
    after = await engine.redis.hgetall(meta)
    assert after == before  # evseq too: no event
    # 7 available: app's 1 left and web's 6 fit exactly
    assert await engine.patch_campaign("ap2", _patch({"tkt": [APP, {**WEB, "qty": 6}]}),
                                       "ops") is Outcome.OK


async def test_allocations_excluded_and_unknown_skus(engine: Engine) -> None:
    await engine.define_campaign("apd", drop_spec())
    with pytest.raises(ValidationError, match="^allocations: a coupon drop"):
        await engine.patch_campaign("apd", _patch({"five": [APP]}), "ops")
    await engine.define_campaign("apw", allocated_spec([], waitlist={"max_length": 5}))
    with pytest.raises(ValidationError, match="^allocations: "):
        await engine.patch_campaign("apw", _patch({"tkt": [APP]}), "ops")
    await engine.define_campaign("aps", allocated_spec([], shards=2))
    with pytest.raises(ValidationError, match="^allocations: "):
        await engine.patch_campaign("aps", _patch({"tkt": [APP]}), "ops")
    await engine.define_campaign("ap3", allocated_spec([APP]))
    assert await engine.patch_campaign("ap3", _patch({"hat": [APP]}), "ops") is \
        Outcome.NOT_FOUND


async def test_claims_racing_allocation_patches_never_oversell(engine: Engine) -> None:
    """3000 one-unit claims through app, web, partner and none race for 2500 units in 30
    rounds of 100, each round beside a patch that grows app and drops or adds a partner
    allocation: exactly 2500 are sold, each hold took only from allocations of its own
    channel, and none beyond the most it ever had."""
    await engine.define_campaign("ap4", allocated_spec(
        [{"name": "app", "qty": 300, "channels": ["app"]},
         {"name": "web", "qty": 200, "channels": ["web"]}], stock=2500))
    rng = random.Random(15)
    most: Counter[str] = Counter({"app": 300, "web": 200})
    channels = ["app", "web", "partner", ""]
    order = [channels[i % 4] for i in range(3000)]
    results: list[Any] = []
    patched: list[Outcome] = []

    async def patch(k: int) -> None:
        shape = [{"name": "app", "qty": 300 + 20 * k, "channels": ["app"]}]
        if k % 3:
            shape.append({"name": f"partner{k % 2}", "qty": rng.randint(10, 60),
                          "channels": ["partner"]})
        await asyncio.sleep(rng.random() / 500)
        try:
            patched.append(await engine.patch_campaign("ap4", _patch({"tkt": shape}), "ops"))
        except ValidationError:  # more than is left to reserve: refused, nothing changed
            patched.append(Outcome.INVALID)
            return
        for a in shape:
            most[str(a["name"])] = max(most[str(a["name"])], int(a["qty"]))

    async def claim(i: int) -> Any:
        await asyncio.sleep(rng.random() / 500)
        return await engine.claim("ap4", f"u{i}", "tkt", channel=order[i] or None)

    for k in range(30):
        *got, _ = await asyncio.gather(*(claim(i) for i in range(100 * k, 100 * k + 100)),
                                       patch(k))
        results += got
    assert patched.count(Outcome.OK) >= 20, patched
    assert {r.outcome for r in results} <= {Outcome.OK, Outcome.SOLD_OUT}
    sold = sum(r.outcome is Outcome.OK for r in results)
    assert sold <= 2500  # never over
    # A late patch may reserve units for a channel whose claims were all made: give
    # every allocation back to the shared pool, and channel-less claims sell the rest.
    await engine.patch_campaign("ap4", _patch({"tkt": []}), "ops")
    late = await asyncio.gather(*(engine.claim("ap4", f"late{i}", "tkt")
                                  for i in range(2510 - sold)))
    assert sum(r.outcome is Outcome.OK for r in late) == 2500 - sold  # sold out, never over
    stored = await engine.redis.hgetall(keys.campaign_keys("ap4").claims)
    took: Counter[str] = Counter()
    for ch, r in zip(order, results, strict=True):
        if r.outcome is Outcome.OK and r.claim:
            for part in filter(None, records.CLAIM.decode(stored[r.claim.claim_id])
                               .alloc.split(",")):
                name, n = part.split(":")
                assert name.rstrip("01") == ch, (name, ch)  # only its own channel's units
                took[name] += int(n)
    assert took["app"] > 300 and took["partner0"] + took["partner1"] > 0
    assert all(took[n] <= most[n] for n in took), (took, most)
    stats = await engine.stats("ap4")
    s = stats.skus[0] if stats else None
    assert s and (s.available, s.held, s.released) == (0, 2500, 2500)


async def test_a_campaign_without_alq_counts_what_was_taken(engine: Engine) -> None:
    """A campaign defined before "alq:<sku>" was kept: its first PATCH of allocations
    finds each qty as defined from what is reserved and what live holds took."""
    await engine.define_campaign("ap9", allocated_spec([APP, WEB], stock=20))
    assert (await engine.claim("ap9", "u1", "tkt", 3, channel="app")).outcome is Outcome.OK
    lapsed = await engine.claim("ap9", "u2", "tkt", 1, channel="app")
    assert lapsed.claim and (await engine.cancel(lapsed.claim.claim_id, "u2")).outcome \
        is Outcome.OK  # gave its unit back: not taken
    assert (await engine.claim("ap9", "u3", "tkt", 2, channel="web")).outcome is Outcome.OK
    await engine.redis.hdel(keys.campaign_keys("ap9").meta, "alq:tkt")
    with pytest.raises(ValidationError, match=r"allocations\.tkt\[0\]\.qty: holds and "
                                              r"sales took 3 units"):
        await engine.patch_campaign("ap9", _patch({"tkt": [{**APP, "qty": 2}, WEB]}), "ops")
    assert await _meta(engine, "ap9", "app", "web") == [1, 1]  # nothing changed
    assert await engine.patch_campaign("ap9", _patch({"tkt": [{**APP, "qty": 5}, WEB]}),
                                       "ops") is Outcome.OK
    assert await _meta(engine, "ap9", "app", "web") == [2, 1]  # 5 - 3 taken; web as was
    assert (await engine.claim("ap9", "u4", "tkt", 3, channel="app")).outcome is Outcome.OK
    assert await _meta(engine, "ap9", "app") == [0]  # 2 from app, 1 shared: never 5 more
