"""Presale access phases, against a real Valkey: who may claim when, decided in the script."""

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch, CampaignSpec
from stampede.errors import ValidationError
from stampede.state import keys
from tests.conftest import campaign_spec, iso


def make_phases() -> list[dict[str, Any]]:
    """The campaign opens at -60 s; vip from -30 s, members at +100 s, everyone at +200 s."""
    return [{"name": "vip", "opens_at": iso(-30), "tiers": ["vip"]},
            {"name": "fans", "opens_at": iso(100), "tiers": ["member", "fanclub"]},
            {"name": "public", "opens_at": iso(200)}]


def phased(stock: int = 100, phases: list[dict[str, Any]] | None = None,
           **extra: Any) -> Any:
    return campaign_spec(stock=stock, per_user=None, opens_in_s=-60,
                         phases=make_phases() if phases is None else phases, **extra)


async def test_each_audience_claims_from_its_phase_and_hears_when_it_opens(
        engine: Engine) -> None:
    await engine.define_campaign("p1", phased())
    vip = await engine.claim("p1", "ann", "tee", tiers=["vip"])
    assert vip.outcome is Outcome.OK
    # A member and the public are told their own opening, not the campaign's.
    member = await engine.claim("p1", "bob", "tee", tiers=["fanclub", "other"])
    assert member.outcome is Outcome.NOT_OPEN and member.reason == "phase_not_open"
    assert 95_000 < member.params["wait_ms"] <= 100_000
    public = await engine.claim("p1", "cat", "tee")
    assert public.outcome is Outcome.NOT_OPEN and 195_000 < public.params["wait_ms"] <= 200_000
    assert public.params["opens_ms"] - member.params["opens_ms"] == 100_000
    await engine.set_clock_offset("p1", 101_000)
    assert (await engine.claim("p1", "bob", "tee", tiers=["fanclub"])).outcome is Outcome.OK
    assert (await engine.claim("p1", "cat", "tee")).outcome is Outcome.NOT_OPEN
    await engine.set_clock_offset("p1", 201_000)
    assert (await engine.claim("p1", "cat", "tee")).outcome is Outcome.OK
    # A tier's phase stays open: vip claims in the public phase too.
    assert (await engine.claim("p1", "ann", "tee", tiers=["vip"])).outcome is Outcome.OK


async def test_a_members_only_sale_refuses_everyone_else(engine: Engine) -> None:
    await engine.define_campaign("p2", phased(phases=make_phases()[:2]))
    for tiers in ([], ["gold"]):
        r = await engine.claim("p2", "dan", "tee", tiers=tiers)
        assert r.outcome is Outcome.NOT_ELIGIBLE and r.reason == "not_eligible"
    stats = await engine.stats("p2")
    assert stats and stats.claims_by_outcome["not_eligible"] == 2
    assert stats.skus[0].held == 0


async def test_before_the_campaign_opens_the_phase_opening_is_answered(engine: Engine) -> None:
    spec = campaign_spec(stock=5, per_user=None, opens_in_s=50, waves=[{"at": iso(60),
                                                                          "qty": 5}],
                         phases=[{"name": "vip", "opens_at": iso(55), "tiers": ["vip"]},
                                 {"name": "all", "opens_at": iso(150)}])
    await engine.define_campaign("p3", spec)
    r = await engine.claim("p3", "ann", "tee")
    assert r.outcome is Outcome.NOT_OPEN and r.reason == "phase_not_open"
    assert 145_000 < r.params["wait_ms"] <= 150_000


async def test_public_status_lists_the_phases(engine: Engine) -> None:
    await engine.define_campaign("p4", phased())
    status = await engine.public_status("p4")
    assert status is not None
    assert [(p.name, p.tiers) for p in status.phases] == [
        ("vip", ["vip"]), ("fans", ["member", "fanclub"]), ("public", None)]
    plain = campaign_spec(stock=1)
    await engine.define_campaign("p5", plain)
    assert (await engine.public_status("p5")).phases == []  # type: ignore[union-attr]


@pytest.mark.parametrize(("phases", "field"), [
    ([("a", 100, ["x"]), ("b", 50, ["y"])], "phases[1].opens_at"),
    ([("a", 0, ["x"]), ("b", 50, ["y", "x"])], "phases[1].tiers"),
    ([("a", 0, None), ("b", 50, ["y"])], "phases[0].tiers"),
    ([("a", 0, ["x"]), ("a", 50, None)], "phases[1].name"),
    ([("a", -3600, ["x"])], "phases[0].opens_at"),
    ([("a", 7200, None)], "phases[0].opens_at"),
])
async def test_bad_phases_are_refused_naming_the_field(
        engine: Engine, phases: list[tuple[str, int, list[str] | None]], field: str) -> None:
    listed = [{"name": n, "opens_at": iso(at), "tiers": t} for n, at, t in phases]
    with pytest.raises(ValidationError, match=field.replace("[", r"\[").replace("]", r"\]")):
        await engine.define_campaign("bad", phased(phases=listed))
    assert not await engine.redis.exists(keys.campaign_keys("bad").meta)


async def test_phases_exclude_waitlists_and_coupon_drops(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="phases: .*waitlist"):
        await engine.define_campaign("w1", phased(waitlist={"max_length": 10}))
    await engine.define_campaign("w2", campaign_spec(stock=1, waitlist={"max_length": 10}))
    patch = msgspec.convert({"phases": make_phases()}, CampaignPatch)
    with pytest.raises(ValidationError, match="phases: .*waitlist"):
        await engine.patch_campaign("w2", patch, "ops")
    meta = await engine.redis.hgetall(keys.campaign_keys("w2").meta)
    assert meta.get("ph", "") == ""


async def test_phases_are_patched_live_and_checked_against_the_schedule(
        engine: Engine) -> None:
    await engine.define_campaign("p6", campaign_spec(stock=10, per_user=None))
    assert (await engine.claim("p6", "ann", "tee")).outcome is Outcome.OK
    patch = msgspec.convert({"phases": make_phases()}, CampaignPatch)
    assert await engine.patch_campaign("p6", patch, "ops") is Outcome.OK
    assert (await engine.claim("p6", "bob", "tee")).outcome is Outcome.NOT_OPEN
    assert (await engine.claim("p6", "cat", "tee", tiers=["vip"])).outcome is Outcome.OK
    # A schedule that would leave a phase outside it is refused, nothing changed.
    late = msgspec.convert({"closes_at": iso(150)}, CampaignPatch)
    with pytest.raises(ValidationError, match="phases"):
        await engine.patch_campaign("p6", late, "ops")
    reordered = make_phases()
    bad = msgspec.convert({"phases": [reordered[1], reordered[0]]}, CampaignPatch)
    with pytest.raises(ValidationError, match=r"phases\[1\].opens_at"):
        await engine.patch_campaign("p6", bad, "ops")
    assert (await engine.claim("p6", "bob", "tee")).outcome is Outcome.NOT_OPEN
    none = msgspec.convert({"phases": []}, CampaignPatch)
    assert await engine.patch_campaign("p6", none, "ops") is Outcome.OK
    assert (await engine.claim("p6", "bob", "tee")).outcome is Outcome.OK


async def test_malformed_tiers_are_refused_before_the_script(engine: Engine) -> None:
    await engine.define_campaign("p7", phased())
    with pytest.raises(ValidationError, match="tiers"):
        await engine.claim("p7", "ann", "tee", tiers=["v|p"])
    with pytest.raises(ValidationError, match="at most 32"):
        await engine.claim("p7", "ann", "tee", tiers=[f"t{i}" for i in range(33)])


async def test_thousands_of_claims_across_tiers_only_the_open_phases_sell(
        engine: Engine) -> None:
    # 2,000 concurrent claims for 300 units: vip and members are open, the public is
    # not; every hold is a vip's or a member's, and nothing is oversold.
    await engine.define_campaign("p8", phased(stock=300))
    await engine.set_clock_offset("p8", 120_000)
    audiences = {"vip": ["vip"], "member": ["member"], "public": []}
    users = [(f"{kind}{i}", kind) for i in range(700) for kind in audiences][:2000]
    results = await asyncio.gather(*(engine.claim("p8", u, "tee", tiers=audiences[kind])
                                     for u, kind in users))
    by_kind = Counter((kind, r.outcome) for (_, kind), r in zip(users, results, strict=True))
    assert by_kind[("public", Outcome.OK)] == 0
    assert by_kind[("public", Outcome.NOT_OPEN)] == sum(k == "public" for _, k in users)
    assert by_kind[("vip", Outcome.OK)] + by_kind[("member", Outcome.OK)] == 300
    stats = await engine.stats("p8")
    assert stats and stats.skus[0].available == 0 and stats.skus[0].held == 300


async def test_claimants_of_one_batch_each_hear_their_own_phase(engine: Engine) -> None:
    # The script keeps each tier list's opening for its run: lists that are prefixes
    # of one another, or the same tiers in another order, are still told apart.
    await engine.define_campaign("p9", phased(stock=1_000))
    lists: list[list[str]] = [[], ["fanclub"], ["fanclub", "vip"], ["vip", "fanclub"],
                              ["fanclub", "press"], ["press"], ["vip"]]
    claims = [(f"u{i}-{j}", tiers) for i in range(20) for j, tiers in enumerate(lists)]
    results = await asyncio.gather(*(engine.claim("p9", u, "tee", tiers=tiers)
                                     for u, tiers in claims))
    fans = public = None
    for (_, tiers), r in zip(claims, results, strict=True):
        if "vip" in tiers:
            assert r.outcome is Outcome.OK, (tiers, r)
            continue
        assert r.outcome is Outcome.NOT_OPEN and r.reason == "phase_not_open", (tiers, r)
        opens = r.params["opens_ms"]
        if "fanclub" in tiers:
            fans = fans or opens
            assert opens == fans, tiers
        else:
            public = public or opens
            assert opens == public, tiers
    assert fans and public and public - fans == 100_000


async def test_the_readme_concert_spec_is_accepted(engine: Engine) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Presales", 1)[1]
    spec = msgspec.json.decode(section.split("```json\n", 1)[1].split("```", 1)[0],
                               type=CampaignSpec)
    assert await engine.define_campaign("concert", spec) == (Outcome.OK, True)
    status = await engine.public_status("concert")
    assert status and [p.name for p in status.phases] == ["vip", "fan-club", "public"]
