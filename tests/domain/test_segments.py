"""Audience segments against a real Valkey: ops add and remove user ids live, and the
phases that name a segment admit its members from the next claim on."""

from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.models import CampaignPatch
from stampede.errors import ValidationError
from stampede.state import keys
from tests.conftest import campaign_spec, iso


def _phases() -> list[dict[str, Any]]:
    return [{"name": "insiders", "opens_at": iso(-30), "segments": ["insiders"]},
            {"name": "fans", "opens_at": iso(100), "tiers": ["fan"], "segments": ["waitlisted"]},
            {"name": "public", "opens_at": iso(200)}]


async def test_members_claim_in_their_phase_and_removal_is_live(engine: Engine) -> None:
    await engine.define_campaign("s1", campaign_spec(stock=50, per_user=None,
                                                     phases=_phases()))
    assert (await engine.claim("s1", "ann", "tee")).outcome is Outcome.NOT_OPEN
    outcome, _, change = await engine.segments.edit("s1", "insiders", True,
                                                    ["ann", "bob", "ann"], "ops")
    assert outcome is Outcome.OK and change and (change.changed, change.size) == (2, 2)
    assert (await engine.claim("s1", "ann", "tee")).outcome is Outcome.OK
    await engine.segments.edit("s1", "waitlisted", True, ["cat"], "ops")
    cat = await engine.claim("s1", "cat", "tee")
    assert cat.outcome is Outcome.NOT_OPEN and 95_000 < cat.params["wait_ms"] <= 100_000
    _, _, change = await engine.segments.edit("s1", "insiders", False, ["bob", "zed"], "ops")
    assert change and (change.changed, change.size) == (1, 1)
    assert (await engine.claim("s1", "bob", "tee")).outcome is Outcome.NOT_OPEN
    stats = await engine.stats("s1")
    assert stats and stats.segments == {"insiders": 1, "waitlisted": 1}
    status = await engine.public_status("s1")
    assert status and [(p.tiers, p.segments) for p in status.phases] == [
        (None, ["insiders"]), (["fan"], ["waitlisted"]), (None, None)]


async def test_a_large_segment_goes_in_a_thousand_at_a_time(engine: Engine) -> None:
    await engine.define_campaign("s2", campaign_spec(stock=5, per_user=None,
                                                     phases=_phases()[:1]))
    ids = [f"user-{i}" for i in range(25_000)]
    _, _, change = await engine.segments.edit("s2", "insiders", True, ids, "ops")
    assert change and (change.changed, change.size) == (25_000, 25_000)
    events = await engine.redis.xrange(keys.events_key("s2"))
    assert sum(e[1]["type"] == "segment_changed" for e in events) == 25
    assert (await engine.claim("s2", "user-24999", "tee")).outcome is Outcome.OK
    assert (await engine.claim("s2", "user-25000", "tee")).outcome is Outcome.NOT_ELIGIBLE


async def test_a_bad_id_refuses_the_whole_upload(engine: Engine) -> None:
    await engine.define_campaign("s3", campaign_spec(stock=5, per_user=None,
                                                     phases=_phases()[:1]))
    with pytest.raises(ValidationError, match="line 3: 'b|d'"):
        await engine.segments.edit("s3", "insiders", True, ["ann", "bob", "b|d"], "ops")
    assert not await engine.redis.exists(keys.presale_keys("s3").segments)
    outcome, reason, _ = await engine.segments.edit("nope", "insiders", True, ["ann"], "ops")
    assert (outcome, reason) == (Outcome.NOT_FOUND, "no_campaign")


async def test_a_segment_in_two_phases_is_refused(engine: Engine) -> None:
    phases = _phases()
    phases[1]["segments"] = ["insiders"]
    with pytest.raises(ValidationError, match=r"phases\[1\].segments"):
        await engine.define_campaign("s4", campaign_spec(stock=5, per_user=None,
                                                         phases=phases))
    await engine.define_campaign("s4", campaign_spec(stock=5, per_user=None))
    with pytest.raises(ValidationError, match=r"phases\[1\].segments"):
        await engine.patch_campaign("s4", msgspec.convert({"phases": phases}, CampaignPatch),
                                    "ops")
