"""Presale allocations against a real Valkey: a SKU's stock split per channel and tier
with a shared remainder, decided in the claim script; unused units return to the shared
pool at their time or by ops, live; releases give units back; thousands of concurrent
claims across channels and tiers never take a channel past its allocation plus the shared
pool, nor a claim units of an allocation not of its channel or tiers."""

import asyncio
from collections import Counter
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.models import CampaignSpec
from stampede.errors import ValidationError
from stampede.state import keys, records
from tests.conftest import iso


def allocated_spec(allocs: list[dict[str, Any]], stock: int = 10,
                   **extra: Any) -> CampaignSpec:
    return msgspec.convert({
        "name": "gig", "opens_at": iso(-60), "closes_at": iso(3600),
        "limits": {"max_per_claim": 10},
        "skus": [{"sku": "tkt", "price": 5000, "allocations": allocs,
                  "waves": [{"at": iso(-30), "qty": stock}]}], **extra}, CampaignSpec)


APP_WEB = [{"name": "app", "qty": 4, "channels": ["app"]},
           {"name": "web", "qty": 3, "channels": ["web"]}]


async def _meta(engine: Engine, cid: str, *names: str) -> list[int]:
    raw = await engine.redis.hmget(keys.campaign_keys(cid).meta,
                                   [f"al:tkt:{n}" for n in names])
    return [int(v) for v in raw]


async def _in_stats(engine: Engine, cid: str) -> list[tuple[str, int, bool]]:
    stats = await engine.stats(cid)
    assert stats
    return [(a.name, a.reserved, a.returned) for a in stats.skus[0].allocations]


async def test_a_channel_takes_its_allocation_then_the_shared_pool(engine: Engine) -> None:
    await engine.define_campaign("a1", allocated_spec(APP_WEB))  # 3 shared
    r = await engine.claim("a1", "u1", "tkt", 5, channel="app")  # 4 app + 1 shared
    assert r.outcome is Outcome.OK
    assert await _meta(engine, "a1", "app", "web") == [0, 3]
    r = await engine.claim("a1", "u2", "tkt", 3, channel="partner")  # 2 shared left
    assert r.outcome is Outcome.SOLD_OUT
    assert (await engine.claim("a1", "u2", "tkt", 2)).outcome is Outcome.OK
    assert (await engine.claim("a1", "u3", "tkt", 1, channel="app")).outcome is \
        Outcome.SOLD_OUT
    assert (await engine.claim("a1", "u4", "tkt", 3, channel="web")).outcome is Outcome.OK
    stats = await engine.stats("a1")
    assert stats and (stats.skus[0].available, stats.skus[0].held) == (0, 10)
    assert [(a.name, a.reserved, a.channels, a.tiers) for a in stats.skus[0].allocations] \
        == [("app", 0, ["app"], None), ("web", 0, ["web"], None)]


async def test_a_tier_allocation_and_a_release_giving_units_back(engine: Engine) -> None:
    allocs = [{"name": "members", "qty": 6, "tiers": ["member"]}]
    await engine.define_campaign("a2", allocated_spec(allocs))  # 4 shared
    held = await engine.claim("a2", "m1", "tkt", 6, tiers=("member",))
    assert held.outcome is Outcome.OK and held.claim
    assert await _meta(engine, "a2", "members") == [0]
    assert (await engine.claim("a2", "p1", "tkt", 5)).outcome is Outcome.SOLD_OUT
    assert (await engine.cancel(held.claim.claim_id, "m1")).outcome is Outcome.OK
    assert await _meta(engine, "a2", "members") == [6]  # back to the allocation
    assert (await engine.claim("a2", "p1", "tkt", 5)).outcome is Outcome.SOLD_OUT
    stored = await engine.redis.hget(keys.campaign_keys("a2").claims, held.claim.claim_id)
    assert stored and records.CLAIM.decode(stored).alloc == "members:6"  # what it gave back


async def test_unused_units_return_by_ops_and_at_their_time(engine: Engine) -> None:
    allocs = [{"name": "app", "qty": 4, "channels": ["app"]},
              {"name": "partner", "qty": 4, "channels": ["partner"], "returns_at": iso(100)}]
    await engine.define_campaign("a3", allocated_spec(allocs))  # 2 shared
    assert (await engine.claim("a3", "u1", "tkt", 3)).outcome is Outcome.SOLD_OUT
    assert await _in_stats(engine, "a3") == [("app", 4, False), ("partner", 4, False)]
    assert await engine.return_allocation("a3", "tkt", "app", "ops") == (Outcome.OK, "", 4)
    assert await _in_stats(engine, "a3") == [("app", 0, True), ("partner", 4, False)]
    assert await engine.return_allocation("a3", "tkt", "app", "ops") == \
        (Outcome.CONFLICT, "allocation_returned", 0)
    assert await engine.return_allocation("a3", "tkt", "nope", "ops") == \
        (Outcome.NOT_FOUND, "no_allocation", 0)
    assert (await engine.claim("a3", "u1", "tkt", 6)).outcome is Outcome.OK  # 4 + 2
    assert (await engine.claim("a3", "u2", "tkt", 1)).outcome is Outcome.SOLD_OUT
    await engine.set_clock_offset("a3", 101_000)
    # stats count a due return before the next claim makes it
    assert await _in_stats(engine, "a3") == [("app", 0, True), ("partner", 0, True)]
    assert (await engine.claim("a3", "u2", "tkt", 4)).outcome is Outcome.OK
    assert await _meta(engine, "a3", "app", "partner") == [-1, -1]
    events = await engine.redis.xrange(keys.events_key("a3"))
    returned = [(e["allocation"], e["qty"], e["by"]) for _, e in events
                if e["type"] == "allocation_returned"]
    assert returned == [("app", "4", "ops"), ("partner", "4", "schedule")]


@pytest.mark.parametrize(("allocs", "extra", "field"), [
    ([{"name": "a", "qty": 8, "channels": ["app"]}, {"name": "b", "qty": 3, "tiers": ["x"]}],
     {}, r"skus\[0\]\.allocations: the allocations add up to 11 units, more than the 10"),
    ([{"name": "a", "qty": 1, "channels": ["app"]}, {"name": "a", "qty": 1, "tiers": ["x"]}],
     {}, r"skus\[0\]\.allocations\[1\]\.name"),
    ([{"name": "a", "qty": 1}], {}, r"skus\[0\]\.allocations\[0\]: an allocation names"),
    ([{"name": "a", "qty": 1, "channels": ["app"], "returns_at": iso(7200)}], {},
     r"skus\[0\]\.allocations\[0\]\.returns_at"),
    ([{"name": "a", "qty": 1, "channels": ["app"]}], {"waitlist": {}},
     r"skus\[0\]\.allocations: a campaign with allocations takes no waitlist"),
])
async def test_a_bad_spec_names_the_field(engine: Engine, allocs: list[dict[str, Any]],
                                          extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        await engine.define_campaign("a4", allocated_spec(allocs, **extra))
    assert await engine.stats("a4") is None


async def test_thousands_of_claims_across_channels_never_pass_a_channel(
        engine: Engine) -> None:
    """3000 one-unit claims through app, web, partner and none race for 1000 units
    (app 300, web 200, partner 100, 400 shared) while ops return partner's midway."""
    allocs = [{"name": "app", "qty": 300, "channels": ["app"]},
              {"name": "web", "qty": 200, "channels": ["web"]},
              {"name": "partner", "qty": 100, "channels": ["partner"]}]
    await engine.define_campaign("a5", allocated_spec(allocs, stock=1000))
    channels = ["app", "web", "partner", ""]
    order = [channels[i % 4] for i in range(3000)]

    async def ops() -> tuple[Outcome, str, int]:
        await asyncio.sleep(0.05)
        return await engine.return_allocation("a5", "tkt", "partner", "ops")

    results = await asyncio.gather(*(engine.claim("a5", f"u{i}", "tkt", channel=ch or None)
                                     for i, ch in enumerate(order)), ops())
    took: Counter[str] = Counter()
    for ch, r in zip(order, results[:-1], strict=True):
        assert r.outcome in (Outcome.OK, Outcome.SOLD_OUT)
        took[ch] += r.outcome is Outcome.OK
    assert sum(took.values()) == 1000  # sold out exactly, nothing oversold
    returned = results[-1][2]
    shared = 400 + returned
    assert took["app"] <= 300 + shared and took["web"] <= 200 + shared
    assert took["partner"] <= 100 - returned + shared
    assert took[""] <= shared
    assert took["app"] >= 300 and took["web"] >= 200  # their allocations were theirs
    stats = await engine.stats("a5")
    s = stats.skus[0] if stats else None
    assert s and s.available == 0 and s.held == 1000 == s.released
    assert await _meta(engine, "a5", "app", "web", "partner") == [0, 0, -1]


async def test_thousands_of_claims_across_channels_and_tiers_of_one_sku(
        engine: Engine) -> None:
    """4000 one-unit claims of one SKU, every mix of channel (app, web, none) and tiers
    (member, vip, both, none), race for 1200 units: app 300, web 200, members 300,
    vip 100, 300 shared. Each hold took only from allocations of its channel or tiers,
    each allocation gave exactly its qty, the shared pool its 300, and nothing more."""
    allocs = [{"name": "app", "qty": 300, "channels": ["app"]},
              {"name": "web", "qty": 200, "channels": ["web"]},
              {"name": "members", "qty": 300, "tiers": ["member"]},
              {"name": "vip", "qty": 100, "tiers": ["vip"]}]
    await engine.define_campaign("a6", allocated_spec(allocs, stock=1200))
    kinds = [(ch, tiers) for ch in ("app", "web", "")
             for tiers in ((), ("member",), ("vip",), ("member", "vip"))]
    order = [kinds[i % len(kinds)] for i in range(4000)]
    results = await asyncio.gather(*(
        engine.claim("a6", f"u{i}", "tkt", channel=ch or None, tiers=tiers)
        for i, (ch, tiers) in enumerate(order)))
    assert {r.outcome for r in results} == {Outcome.OK, Outcome.SOLD_OUT}
    admits = {"app": lambda ch, t: ch == "app", "web": lambda ch, t: ch == "web",
              "members": lambda ch, t: "member" in t, "vip": lambda ch, t: "vip" in t}
    stored = await engine.redis.hgetall(keys.campaign_keys("a6").claims)
    took: Counter[str] = Counter()
    for (ch, tiers), r in zip(order, results, strict=True):
        if r.outcome is not Outcome.OK:
            continue
        assert r.claim
        alloc = records.CLAIM.decode(stored[r.claim.claim_id]).alloc
        for part in filter(None, alloc.split(",")):
            name, n = part.split(":")
            assert admits[name](ch, tiers), (ch, tiers, alloc)  # never another's units
            took[name] += int(n)
        took["shared"] += 0 if alloc else 1
    assert took == {"app": 300, "web": 200, "members": 300, "vip": 100, "shared": 300}
    assert await _meta(engine, "a6", "app", "web", "members", "vip") == [0, 0, 0, 0]
    stats = await engine.stats("a6")
    s = stats.skus[0] if stats else None
    assert s and (s.available, s.held, s.released) == (0, 1200, 1200)
