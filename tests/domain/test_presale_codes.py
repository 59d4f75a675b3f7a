"""Presale codes against a real Valkey: signed so a guess fails, spent in the claim script,
bound to their first user, throttled when guessed, counted in stats."""

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stampede import Engine, Outcome
from stampede.domain import presale_codes
from stampede.domain.models import PresaleCodeBatch
from stampede.domain.throttle import ClientSignals
from stampede.state import keys
from tests.conftest import campaign_spec, iso


def _members_only(stock: int = 100) -> Any:
    """Open to tier `fan` only: a presale code of a `fan` batch lets anyone in."""
    return campaign_spec(stock=stock, per_user=None,
                         phases=[{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"]}])


async def _batch(engine: Engine, cid: str, count: int = 3, uses: int = 1,
                 bind: bool = False) -> list[str]:
    outcome, _, batch = await engine.presale_codes.issue(
        cid, PresaleCodeBatch(count=count, tier="fan", uses=uses, bind_to_user=bind), "ops")
    assert outcome is Outcome.OK and batch is not None
    lines = list(engine.presale_codes.csv_lines(cid, batch))
    assert lines[0].startswith("code,batch,serial") and len(lines) == count + 1
    return [line.split(",")[0] for line in lines[1:]]


async def test_a_code_lets_its_holder_in_once(engine: Engine) -> None:
    await engine.define_campaign("pc1", _members_only())
    codes = await _batch(engine, "pc1")
    assert (await engine.claim("pc1", "ann", "tee")).outcome is Outcome.NOT_ELIGIBLE
    held = await engine.claim("pc1", "ann", "tee", code=codes[0].lower())  # any case
    assert held.outcome is Outcome.OK
    again = await engine.claim("pc1", "bob", "tee", code=codes[0])
    assert again.outcome is Outcome.PRESALE_CODE_USED and again.params == {"limit": 1}
    stats = await engine.stats("pc1")
    assert stats and [(b.batch, b.codes_used, b.claims) for b in stats.presale_codes] == \
        [(1, 1, 1)]
    assert stats.claims_by_outcome["code_used"] == 1


async def test_an_n_use_code_bound_to_its_first_user(engine: Engine) -> None:
    await engine.define_campaign("pc2", _members_only())
    code = (await _batch(engine, "pc2", count=1, uses=2, bind=True))[0]
    assert (await engine.claim("pc2", "ann", "tee", code=code)).outcome is Outcome.OK
    stolen = await engine.claim("pc2", "bob", "tee", code=code)
    assert stolen.outcome is Outcome.PRESALE_CODE_INVALID and stolen.reason == "code_bound"
    assert (await engine.claim("pc2", "ann", "tee", code=code)).outcome is Outcome.OK
    assert (await engine.claim("pc2", "ann", "tee", code=code)).outcome is \
        Outcome.PRESALE_CODE_USED


async def test_guessed_codes_are_refused_then_throttled(engine: Engine) -> None:
    await engine.define_campaign("pc3", _members_only())
    real = (await _batch(engine, "pc3", count=1))[0]
    batch, serial, mac = real.split("-")
    forged = [f"{batch}-{serial}-{'A' * 12}", f"{batch}-2-{mac}", "not-a-code",
              f"9-{serial}-{mac}", real.replace("-", "")]
    answers = [await engine.claim("pc3", "mallory", "tee", code=c) for c in forged]
    assert [a.outcome for a in answers] == [Outcome.PRESALE_CODE_INVALID] * 5
    assert {a.reason for a in answers} == {"code_invalid"}
    # A sixth attempt within the burst's window is throttled, with the exact wait,
    # even with the genuine code: guessing costs time, and the code stays unspent.
    throttled = await engine.claim("pc3", "mallory", "tee", code=real)
    assert throttled.outcome is Outcome.THROTTLED and throttled.reason == "presale_code"
    assert throttled.retry_after_ms and 0 < throttled.retry_after_ms <= 2000
    assert (await engine.claim("pc3", "ann", "tee", code=real)).outcome is Outcome.OK
    stats = await engine.stats("pc3")
    assert stats and stats.claims_by_outcome["code_invalid"] == 5
    assert stats.claims_by_outcome["code_throttled"] == 1
    # A code of another campaign is not genuine here.
    await engine.define_campaign("pc4", _members_only())
    assert (await engine.claim("pc4", "ann", "tee", code=real)).outcome is \
        Outcome.PRESALE_CODE_INVALID


@pytest.mark.parametrize(("scope", "signals", "burst"), [
    ("presale_code_network", lambda i: ClientSignals(device=f"d{i}", network="203.0.113.0/24"),
     50),
    ("presale_code_device", lambda i: ClientSignals(device="shared", network=f"10.0.{i}.0/24"),
     10),
])
async def test_guessing_from_many_users_of_one_network_or_device_is_throttled(
        engine: Engine, scope: str, signals: Callable[[int], ClientSignals],
        burst: int) -> None:
    """Each guesser stays within their own limiter (two attempts each), yet together,
    behind one network (or on one device), they are throttled past its burst: the
    refusal names the limiter and says exactly when to retry; a guessed code is never
    let through, and the rest of the world is not slowed down."""
    await engine.define_campaign("pc6", _members_only())
    real = (await _batch(engine, "pc6", count=1))[0]
    batch, serial, mac = real.split("-")
    guesses = [f"{batch}-{n}-{mac}" for n in range(2, 2 + 2 * burst)]
    # All in one loop tick, so in one script call at one server time: the burst is
    # exact however slow the machine. Last, a genuine code from there: it waits too.
    *answers, waited = await asyncio.gather(
        *(engine.claim("pc6", f"guesser{i // 2}", "tee", code=guess, client=signals(i // 2))
          for i, guess in enumerate(guesses)),
        engine.claim("pc6", "ann", "tee", code=real, client=signals(999)))
    assert [a.outcome for a in answers[:burst]] == [Outcome.PRESALE_CODE_INVALID] * burst
    late = answers[burst:]
    assert {(a.outcome, a.reason) for a in late} == {(Outcome.THROTTLED, scope)}
    assert all(a.retry_after_ms and 0 < a.retry_after_ms <= 2000 for a in late)
    assert (waited.outcome, waited.reason) == (Outcome.THROTTLED, scope)  # and unspent
    # ... while from elsewhere it is good at once.
    elsewhere = ClientSignals(device="own", network="198.51.100.0/24")
    assert (await engine.claim("pc6", "ann", "tee", code=real, client=elsewhere)).outcome \
        is Outcome.OK
    stats = await engine.stats("pc6")
    assert stats and stats.claims_by_outcome["code_throttled"] == burst + 1


def test_the_code_attempt_limits_are_the_scripts() -> None:
    lua = (Path(presale_codes.__file__).parent.parent / "lua" / "include" /
           "presale_codes.lua").read_text()
    found = re.findall(r"\{'(presale_code[a-z_]*)', (\d+), (\d+)\}", lua)
    assert {scope: (int(t), int(b)) for scope, t, b in found} == \
        {scope: (t, b) for scope, (_, t, b) in presale_codes.CODE_ATTEMPT_LIMITS.items()}


async def test_a_coupon_drop_or_missing_campaign_issues_no_codes(engine: Engine) -> None:
    spec = PresaleCodeBatch(count=1, tier="fan")
    outcome, reason, _ = await engine.presale_codes.issue("nope", spec, "ops")
    assert (outcome, reason) == (Outcome.NOT_FOUND, "no_campaign")
    assert not await engine.redis.exists(keys.presale_keys("nope").pbatches)


@pytest.mark.parametrize("uses", [1, 3])
async def test_concurrent_claims_spend_each_code_exactly_its_uses(engine: Engine,
                                                                  uses: int) -> None:
    # 50 codes, 20 concurrent claimants per code (1,000 claims): exactly `uses`
    # claims per code hold, across batches of the same script run too.
    await engine.define_campaign("pc5", _members_only(stock=10_000))
    codes = await _batch(engine, "pc5", count=50, uses=uses)
    claims = [(f"u{i}-{j}", code) for i, code in enumerate(codes) for j in range(20)]
    results = await asyncio.gather(*(engine.claim("pc5", u, "tee", code=c) for u, c in claims))
    held = Counter(c for (_, c), r in zip(claims, results, strict=True)
                   if r.outcome is Outcome.OK)
    assert held == dict.fromkeys(codes, uses)
    assert {r.outcome for r in results} == {Outcome.OK, Outcome.PRESALE_CODE_USED}
    stats = await engine.stats("pc5")
    assert stats and stats.skus[0].held == 50 * uses
    assert (stats.presale_codes[0].codes_used, stats.presale_codes[0].claims) == (50, 50 * uses)


async def test_a_hold_that_lapses_or_is_cancelled_gives_its_code_use_back(
        engine: Engine) -> None:
    await engine.define_campaign("pc5", _members_only())
    code = (await _batch(engine, "pc5", count=1, uses=1))[0]
    held = await engine.claim("pc5", "ann", "tee", code=code)
    assert held.claim is not None
    assert (await engine.claim("pc5", "bob", "tee", code=code)).outcome is \
        Outcome.PRESALE_CODE_USED
    await engine.cancel(held.claim.claim_id, "ann")  # cancelled: the use comes back
    again = await engine.claim("pc5", "bob", "tee", code=code)
    assert again.outcome is Outcome.OK and again.claim is not None
    await engine.set_clock_offset("pc5", 601_000)  # bob's hold lapses; the sweeper expires it
    assert await engine.sweep("pc5") == 1
    third = await engine.claim("pc5", "cat", "tee", code=code)
    assert third.outcome is Outcome.OK and third.claim is not None
    await engine.confirm(third.claim.claim_id, "cat")  # bought: the use is spent for good
    assert (await engine.claim("pc5", "dan", "tee", code=code)).outcome is \
        Outcome.PRESALE_CODE_USED
    stats = await engine.stats("pc5")  # stats count the claims the code made
    assert stats and [(b.codes_used, b.claims) for b in stats.presale_codes] == [(1, 3)]
