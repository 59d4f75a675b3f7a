"""Each Lua operation on its own, against a real server."""

import re

import pytest

from stampede import Engine, Outcome, lua
from stampede.domain.models import CampaignPatch, LimitsPatch
from stampede.outcomes import GUARD_REFUSALS, REFUSALS
from stampede.state import keys
from stampede.state.scripts import OPERATIONS, render
from tests.conftest import campaign_spec


def test_outcome_constants_match_the_enum() -> None:
    text = lua.include_path("common").read_text()
    found = {m.group(1): int(m.group(2))
             for m in re.finditer(r"^local ([A-Z_]+) = (\d+)$", text, re.MULTILINE)}
    assert found == {o.name: o.value for o in Outcome}


def test_guard_refusal_table_matches_python() -> None:
    text = lua.include_path("guard").read_text()
    table = re.search(r"local GUARD_REFUSALS = \{(.*?)\}\n", text, re.DOTALL)
    assert table
    found = dict(re.findall(r"\[([A-Z_]+)\] = '([a-z_]+)'", table.group(1)))
    assert found == {o.name: o.reason for o in GUARD_REFUSALS}


def _lua_sources() -> dict[str, str]:
    root = lua.source_path("claim_batch").parent
    return {p.name: p.read_text() for p in sorted(root.rglob("*.lua"))}


def test_every_reason_a_script_answers_is_in_the_refusal_table() -> None:
    # OK's detail says how it succeeded; a guard refusal's is its scope, not a reason.
    outcomes = "|".join(o.name for o in Outcome
                        if o is not Outcome.OK and o not in GUARD_REFUSALS)
    seen = set()
    for name, text in _lua_sources().items():
        code = "\n".join(line.split("--")[0] for line in text.splitlines())
        for m in re.finditer(rf"\b({outcomes})\s*,\s*'([a-z_]+)[:']", code):
            assert m.group(2) in REFUSALS, f"{name}: {m.group(1)} answers {m.group(2)!r}"
            seen.add(m.group(2))
        for line in code.splitlines():
            for m in re.finditer(r"'([a-z_]+):' \.\.", line):
                if m.group(1) in REFUSALS:  # "reason:v1:v2": as many values as named
                    n = 1 + line[m.end():].count("':'")
                    assert n == len(REFUSALS[m.group(1)].values), f"{name}: {line.strip()}"
                    seen.add(m.group(1))
    assert {"per_user", "per_sku", "not_open", "max_per_claim", "no_sku", "no_campaign",
            "stock", "budget", "merchant_cap", "gift_void"} <= seen  # the scan finds them


@pytest.mark.parametrize("name", OPERATIONS)
def test_every_script_documents_keys_argv_returns(name: str) -> None:
    header = lua.source_path(name).read_text().split("--@include")[0]
    for word in ("KEYS", "ARGV", "Returns"):
        assert word in header, f"{name}.lua header lacks {word}"


@pytest.mark.parametrize("name", OPERATIONS)
def test_scripts_never_build_key_names(name: str) -> None:
    # Keys come in KEYS; a call whose first key argument is a concatenation
    # would be a key built in Lua (not Cluster-safe).
    text = render(name)
    assert not re.search(r"redis\.call\('\w+',\s*[^K'\s][^,]*\.\.", text)


# Events' field names (never the header's) are checked in test_event_types.py.


async def test_claim_then_confirm(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=3))
    r = await engine.claim("c1", "alice", "tee", 2)
    assert r.outcome is Outcome.OK and r.claim is not None
    assert r.claim.status == "held" and r.claim.price == 1999
    done = await engine.confirm(r.claim.claim_id, "alice")
    assert done.outcome is Outcome.OK and done.claim and done.claim.status == "confirmed"
    again = await engine.confirm(r.claim.claim_id, "alice")
    assert again.outcome is Outcome.OK
    assert (await engine.cancel(r.claim.claim_id, "alice")).outcome is Outcome.CONFLICT
    stats = await engine.stats("c1")
    assert stats and (stats.skus[0].available, stats.skus[0].held, stats.skus[0].sold) == (1, 0, 2)


async def test_claim_refusals(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=2, per_user=2))
    assert (await engine.claim("c1", "a", "nope")).outcome is Outcome.NOT_FOUND
    assert (await engine.claim("c1", "a", "tee", 11)).outcome is Outcome.INVALID
    assert (await engine.claim("c1", "a", "tee", 3)).outcome is Outcome.LIMIT_EXCEEDED
    assert (await engine.claim("c1", "a", "tee", 2)).outcome is Outcome.OK
    assert (await engine.claim("c1", "b", "tee", 1)).outcome is Outcome.SOLD_OUT
    assert (await engine.claim("nope", "b", "tee", 1)).outcome is Outcome.NOT_FOUND


async def test_campaign_gates(engine: Engine) -> None:
    await engine.define_campaign("soon", campaign_spec(opens_in_s=3600))
    assert (await engine.claim("soon", "a", "tee")).outcome is Outcome.NOT_OPEN
    await engine.define_campaign("c1", campaign_spec())
    await engine.patch_campaign("c1", CampaignPatch(state="paused"), "ops")
    assert (await engine.claim("c1", "a", "tee")).outcome is Outcome.PAUSED
    await engine.patch_campaign("c1", CampaignPatch(state="open"), "ops")
    assert (await engine.claim("c1", "a", "tee")).outcome is Outcome.OK
    await engine.patch_campaign("c1", CampaignPatch(state="closed"), "ops")
    assert (await engine.claim("c1", "a", "tee")).outcome is Outcome.CLOSED
    assert await engine.patch_campaign("c1", CampaignPatch(state="open"), "ops") \
        is Outcome.CONFLICT


async def test_idempotent_claim_returns_first_answer(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=1))
    first = await engine.claim("c1", "a", "tee", 1, idempotency_key="k1")
    again = await engine.claim("c1", "a", "tee", 1, idempotency_key="k1")
    assert first.outcome is Outcome.OK and again == first
    other = await engine.claim("c1", "b", "tee", 1, idempotency_key="k1")
    assert other.outcome is Outcome.SOLD_OUT  # keys are scoped per user
    replay = await engine.claim("c1", "b", "tee", 1, idempotency_key="k1")
    await engine.adjust_stock("c1", "tee", 5, "ops")
    # sold-out is remembered too: the retry changes nothing
    assert (await engine.claim("c1", "b", "tee", 1, idempotency_key="k1")) == replay
    mismatch = await engine.claim("c1", "a", "tee", 2, idempotency_key="k1")
    assert mismatch.outcome is Outcome.IDEMPOTENCY_MISMATCH
    stats = await engine.stats("c1")
    assert stats and stats.skus[0].held == 1


async def test_retried_batch_with_same_claim_ids_changes_nothing(engine: Engine) -> None:
    # What redis-py does after a lost reply: the same script, same arguments.
    from stampede.domain.batcher import PendingClaim

    await engine.define_campaign("c1", campaign_spec(stock=10, per_user=5))
    batch = [PendingClaim(keys.new_claim_id("c1"), "a", "tee", 2, None) for _ in range(2)]
    first = await engine._claim_batch("c1", batch)
    second = await engine._claim_batch("c1", batch)
    assert first == second
    stats = await engine.stats("c1")
    assert stats and stats.skus[0].held == 4 and stats.claims_by_outcome["held"] == 2


async def test_expiry_by_clock_offset(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=1, hold_ttl_s=60))
    r = await engine.claim("c1", "a", "tee")
    assert r.claim
    await engine.set_clock_offset("c1", 61_000)
    assert await engine.sweep("c1") == 1
    assert await engine.sweep("c1") == 0  # released once
    assert (await engine.confirm(r.claim.claim_id, "a")).outcome is Outcome.HOLD_EXPIRED
    stats = await engine.stats("c1")
    assert stats and (stats.skus[0].available, stats.skus[0].held) == (1, 0)
    assert stats.claims_by_outcome["expired"] == 1


async def test_confirm_after_deadline_expires_it_there(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=1, hold_ttl_s=60))
    r = await engine.claim("c1", "a", "tee")
    assert r.claim
    await engine.set_clock_offset("c1", 60_000)
    assert (await engine.confirm(r.claim.claim_id, "a")).outcome is Outcome.HOLD_EXPIRED
    assert await engine.sweep("c1") == 0
    stats = await engine.stats("c1")
    assert stats and stats.skus[0].available == 1


async def test_other_users_claim_is_not_found(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec())
    r = await engine.claim("c1", "a", "tee")
    assert r.claim
    assert (await engine.confirm(r.claim.claim_id, "b")).outcome is Outcome.NOT_FOUND
    assert (await engine.cancel(r.claim.claim_id, "b")).outcome is Outcome.NOT_FOUND
    assert await engine.get_claim(r.claim.claim_id, "b") is None
    assert (await engine.confirm("c1.aaaaaaaaaaaaaaaaaaaa", "a")).outcome is Outcome.NOT_FOUND


async def test_waves_release_on_server_time(engine: Engine) -> None:
    from tests.conftest import iso

    spec = campaign_spec(waves=[{"at": iso(-1), "qty": 5}, {"at": iso(120), "qty": 7},
                                {"at": iso(240), "qty": 2}])
    await engine.define_campaign("c1", spec)
    stats = await engine.stats("c1")
    assert stats
    s = stats.skus[0]
    assert (s.available, s.pending_waves, s.pending_units) == (5, 2, 9)
    await engine.set_clock_offset("c1", 121_000)
    stats = await engine.stats("c1")
    assert stats and (stats.skus[0].available, stats.skus[0].released) == (12, 12)


async def test_adjust_stock(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=2))
    assert await engine.adjust_stock("c1", "tee", 3, "ops") == (Outcome.OK, 5)
    assert await engine.adjust_stock("c1", "tee", -6, "ops") == (Outcome.CONFLICT, 5)
    assert await engine.adjust_stock("c1", "tee", -5, "ops", op_key="x") == (Outcome.OK, 0)
    assert await engine.adjust_stock("c1", "tee", -5, "ops", op_key="x") == (Outcome.OK, 0)
    assert (await engine.adjust_stock("c1", "zzz", 1, "ops"))[0] is Outcome.NOT_FOUND


async def test_patch_limits_apply_to_next_claim(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=10, per_user=5))
    assert (await engine.claim("c1", "a", "tee", 2)).outcome is Outcome.OK
    await engine.patch_campaign("c1", CampaignPatch(limits=LimitsPatch(per_user=2)), "ops")
    assert (await engine.claim("c1", "a", "tee", 1)).outcome is Outcome.LIMIT_EXCEEDED
    await engine.patch_campaign("c1", CampaignPatch(sku_limits={"tee": 1}), "ops")
    assert (await engine.claim("c1", "b", "tee", 2)).outcome is Outcome.LIMIT_EXCEEDED
    assert await engine.patch_campaign("c1", CampaignPatch(sku_limits={"zz": 1}), "ops") \
        is Outcome.NOT_FOUND


async def test_replace_only_before_claims(engine: Engine) -> None:
    assert await engine.define_campaign("c1", campaign_spec(stock=5)) == (Outcome.OK, True)
    assert await engine.define_campaign("c1", campaign_spec(stock=8)) == (Outcome.OK, False)
    await engine.claim("c1", "a", "tee")
    assert (await engine.define_campaign("c1", campaign_spec()))[0] is Outcome.CONFLICT


async def test_every_change_appends_a_contiguous_event(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=5))
    r = await engine.claim("c1", "a", "tee")
    assert r.claim
    await engine.confirm(r.claim.claim_id, "a")
    await engine.adjust_stock("c1", "tee", 1, "ops")
    entries = await engine.redis.xrange(keys.events_key("c1"))
    assert [e["type"] for _, e in entries] == [
        "campaign_defined", "wave_released", "claim_held", "claim_confirmed", "stock_adjusted"]
    assert [int(e["seq"]) for _, e in entries] == [1, 2, 3, 4, 5]


async def test_noscript_reload_after_script_flush(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec())
    await engine.redis.script_flush()
    assert (await engine.claim("c1", "a", "tee")).outcome is Outcome.OK
    await engine.redis.script_flush()
    assert (await engine.stats("c1")) is not None
