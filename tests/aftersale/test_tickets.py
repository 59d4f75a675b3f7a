"""Tickets and check-in against a real Valkey: codes rotate, the first scan admits,
refunded tickets never get in, and two gates at once admit one."""

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

from stampede import Engine, Settings
from stampede.domain.coupons.codes import STEP_MS, CodeKeys
from stampede.domain.tickets import Scan, Scanner, ScannerSpec, Tickets, ticket_code
from stampede.state import keys
from tests.aftersale.helpers import bought, refund, sale_spec
from tests.domain.test_concurrency import _clone

NORTH = Scanner("north-1", "arena", "north")
SOUTH = Scanner("south-1", "arena", "south")


def ticketed(stock: int = 10, **extra: object) -> object:
    return sale_spec(stock=stock, tickets={"venue": "arena"}, **extra)


async def _codes(engine: Engine, cid: str, user: str) -> dict[str, str | None]:
    views = await engine.tickets.mine(cid, user)
    assert views is not None
    return {v.ticket_id: v.code for v in views}


async def test_each_confirmed_unit_is_a_ticket_with_a_rotating_code(engine: Engine) -> None:
    await engine.define_campaign("gig", ticketed())  # type: ignore[arg-type]
    claim = await bought(engine, "gig", "ann", 2)
    assert await engine.tickets.mine("gig", "bob") == []
    views = await engine.tickets.mine("gig", "ann")
    assert views is not None
    assert [(v.ticket_id, v.status, v.sku) for v in views] == [
        (f"{claim}-1", "valid", "tee"), (f"{claim}-2", "valid", "tee")]
    step = int(time.time() * 1000) // STEP_MS
    code = views[0].code
    assert code == ticket_code(engine.tickets.code_keys, f"{claim}-1", step) or \
        code == ticket_code(engine.tickets.code_keys, f"{claim}-1", step - 1)
    assert await engine.tickets.mine("nope", "ann") is None
    await engine.define_campaign("plain", sale_spec())
    assert await engine.tickets.mine("plain", "ann") is None


async def test_first_scan_admits_the_second_says_where_and_when(engine: Engine) -> None:
    await engine.define_campaign("gig", ticketed())  # type: ignore[arg-type]
    await bought(engine, "gig", "ann", 1)
    code = next(iter((await _codes(engine, "gig", "ann")).values()))
    assert code is not None
    first, = await engine.tickets.check_in(NORTH, [Scan(code=code)])
    assert first.verdict == "admitted" and first.gate == "north"
    second, = await engine.tickets.check_in(SOUTH, [Scan(code=code)])
    assert (second.verdict, second.gate, second.at) == ("checked_in", "north", first.at)
    views = await engine.tickets.mine("gig", "ann")
    assert views and views[0].status == "checked_in" and views[0].code is None
    stats = await engine.stats("gig")
    assert stats and stats.checkins == {"north": 1}


async def test_forged_stale_and_foreign_codes_are_refused(engine: Engine) -> None:
    await engine.define_campaign("gig", ticketed())  # type: ignore[arg-type]
    claim = await bought(engine, "gig", "ann", 1)
    stale = ticket_code(engine.tickets.code_keys, f"{claim}-1",
                        int(time.time() * 1000) // STEP_MS - 3)
    forged = f"{claim}-1.AAAAAAA"
    other_unit = ticket_code(engine.tickets.code_keys, f"{claim}-2",
                             int(time.time() * 1000) // STEP_MS)
    elsewhere = Scanner("x", "stadium", "g1")
    code = (await _codes(engine, "gig", "ann"))[f"{claim}-1"]
    assert code is not None
    verdicts = await engine.tickets.check_in(NORTH, [Scan(code=c) for c in (
        stale, forged, "garbage", other_unit)])
    assert [v.verdict for v in verdicts] == ["bad_code", "bad_code", "bad_code", "not_found"]
    foreign, = await engine.tickets.check_in(elsewhere, [Scan(code=code)])
    assert foreign.verdict == "wrong_venue"
    assert (await engine.stats("gig")).checkins == {}  # type: ignore[union-attr]


async def test_a_refunded_ticket_cannot_be_checked_in(engine: Engine) -> None:
    await engine.define_campaign("gig", ticketed())  # type: ignore[arg-type]
    claim = await bought(engine, "gig", "ann", 3)
    codes = await _codes(engine, "gig", "ann")
    admitted, = await engine.tickets.check_in(NORTH, [Scan(code=codes[f"{claim}-3"] or "")])
    assert admitted.verdict == "admitted"
    # A whole refund would take a checked-in ticket: only the two others can go.
    assert (await refund(engine, claim)).reason == "refund_exceeds"
    done = await refund(engine, claim, qty=2)
    assert done.view and done.view.left == 1
    events = [e for _, e in await engine.redis.xrange(keys.events_key("gig"))
              if e["type"] == "claim_refunded"]
    assert events[-1]["tickets"] == "2,1"
    verdicts = await engine.tickets.check_in(NORTH, [Scan(code=codes[f"{claim}-{n}"] or "")
                                                     for n in (1, 2)])
    assert [v.verdict for v in verdicts] == ["refunded", "refunded"]
    views = await engine.tickets.mine("gig", "ann")
    assert views and [v.status for v in views] == ["refunded", "refunded", "checked_in"]


async def test_offline_scans_uploaded_later_get_the_same_verdicts_in_order(
        engine: Engine) -> None:
    await engine.define_campaign("gig", ticketed())  # type: ignore[arg-type]
    a = await bought(engine, "gig", "ann", 1)
    b = await bought(engine, "gig", "bob", 1)
    then = int(time.time() * 1000) - 10 * 60_000  # ten minutes ago, offline
    at = datetime.fromtimestamp(then / 1000, UTC)
    code_a = ticket_code(engine.tickets.code_keys, f"{a}-1", then // STEP_MS)
    code_b = ticket_code(engine.tickets.code_keys, f"{b}-1", then // STEP_MS)
    verdicts = await engine.tickets.check_in(NORTH, [
        Scan(code=code_a, scanned_at=at), Scan(code=code_b, scanned_at=at),
        Scan(code=code_a, scanned_at=at)])
    assert [v.verdict for v in verdicts] == ["admitted", "admitted", "checked_in"]
    assert verdicts[0].at == verdicts[2].at and verdicts[0].at is not None
    assert abs(verdicts[0].at.timestamp() * 1000 - then) < 1
    # The same code scanned now (not offline) is stale: ten minutes old.
    late, = await engine.tickets.check_in(NORTH, [Scan(code=code_a)])
    assert late.verdict == "bad_code"


async def test_two_gates_scanning_the_same_tickets_at_once_admit_each_once(
        engine: Engine, settings: Settings) -> None:
    await engine.define_campaign("gig", ticketed(stock=60, per_user=None))  # type: ignore[arg-type]
    claims = [await bought(engine, "gig", f"u{i}", 1) for i in range(50)]
    codes = [(await _codes(engine, "gig", f"u{i}"))[f"{c}-1"] for i, c in enumerate(claims)]
    engines = [engine] + [await _clone(engine, settings) for _ in range(3)]
    try:
        calls = []
        for i, code in enumerate(codes):
            for g, scanner in enumerate((NORTH, SOUTH, NORTH, SOUTH)):
                calls.append(engines[(i + g) % 4].tickets.check_in(scanner,
                                                                   [Scan(code=code or "")]))
        results = await asyncio.gather(*calls)
    finally:
        for other in engines[1:]:
            await other.close()
    by_ticket: dict[str, Counter[str]] = {}
    for (v,) in results:
        assert v.ticket_id
        by_ticket.setdefault(v.ticket_id, Counter())[v.verdict] += 1
    assert all(c == {"admitted": 1, "checked_in": 3} for c in by_ticket.values())
    stats = await engine.stats("gig")
    assert stats and sum(stats.checkins.values()) == 50


async def test_scanner_credentials_are_issued_stored_hashed_and_revoked(
        engine: Engine) -> None:
    creds = await engine.tickets.put_scanner("north-1", ScannerSpec(venue="arena",
                                                                    gate="north"))
    found = await engine.tickets.scanner(creds.token)
    assert found == Scanner("north-1", "arena", "north")
    assert creds.token not in str(await engine.redis.hgetall(keys.SCANNERS))
    assert await engine.tickets.scanner(creds.token + "x") is None
    assert await engine.tickets.scanner("nobody.abc") is None
    assert await engine.tickets.remove_scanner("north-1")
    assert await engine.tickets.scanner(creds.token) is None


async def test_single_scans_of_one_tick_share_a_script_call(engine: Engine) -> None:
    await engine.define_campaign("gig", ticketed(stock=40, per_user=None))  # type: ignore[arg-type]
    claims = [await bought(engine, "gig", f"u{i}", 1) for i in range(40)]
    codes = [(await _codes(engine, "gig", f"u{i}"))[f"{c}-1"] or ""
             for i, c in enumerate(claims)]
    calls: list[str] = []
    engine.scripts.observer = lambda name, _s: calls.append(name)
    results = await asyncio.gather(*(engine.tickets.check_in(NORTH if i % 2 else SOUTH,
                                                             [Scan(code=code)])
                                     for i, code in enumerate(codes + codes)))
    verdicts = Counter(v.verdict for (v,) in results)
    assert verdicts == {"admitted": 40, "checked_in": 40}
    assert [v.verdict for (v,) in results[:40]] == ["admitted"] * 40  # in submission order
    assert 1 <= calls.count("checkin") <= 3, calls
    stats = await engine.stats("gig")
    assert stats and stats.checkins == {"north": 20, "south": 20}


async def test_ticket_codes_survive_a_coupon_key_rotation(engine: Engine) -> None:
    """Codes shown under the old key still admit after a rotation (new key first, old
    one still listed), also when an offline scanner uploads them later; once the old
    key is removed they are bad_code; the holder's next code is under the new key."""
    old = "A:ticket-rotation-old-key-0123"
    new = "B:ticket-rotation-new-key-4567"

    def tickets(spec: str) -> Tickets:
        return Tickets(engine.redis, engine.scripts, engine.settings, CodeKeys.parse(spec),
                       engine.grants)

    await engine.define_campaign("gig", ticketed())  # type: ignore[arg-type]
    claim = await bought(engine, "gig", "ann", 3)
    before = {v.ticket_id: v.code or "" for v in await tickets(old).mine("gig", "ann") or []}
    shown_at = datetime.now(UTC)
    rotated = tickets(f"{new},{old}")
    admitted = await rotated.check_in(NORTH, [Scan(code=before[f"{claim}-1"])])
    offline = await rotated.check_in(NORTH, [Scan(code=before[f"{claim}-2"],
                                                  scanned_at=shown_at)])
    assert [v.verdict for v in admitted + offline] == ["admitted", "admitted"]
    after = {v.ticket_id: v.code or "" for v in await rotated.mine("gig", "ann") or []}
    assert after[f"{claim}-3"].split(".")[-1][0] == "B"  # signed with the new active key
    retired = tickets(new)
    stale, = await retired.check_in(NORTH, [Scan(code=before[f"{claim}-3"])])
    assert stale.verdict == "bad_code"
    fresh, = await retired.check_in(NORTH, [Scan(code=after[f"{claim}-3"])])
    assert fresh.verdict == "admitted"
    forged = before[f"{claim}-3"][:-7] + "B" + before[f"{claim}-3"][-6:]  # K swapped
    assert (await rotated.check_in(NORTH, [Scan(code=forged)]))[0].verdict == "bad_code"
