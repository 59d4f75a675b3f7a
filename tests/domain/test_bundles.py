"""Bundles and add-ons against a real Valkey: a claim of several SKUs is held whole or
not at all, every line checked as its own claim would be; confirm, cancel and expiry
act on every line; thousands of concurrent bundle and single claims over a small stock
never oversell a SKU, never half-hold a bundle, and keep per-user limits exact."""

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import msgspec
import pytest

from stampede import Engine, Outcome
from stampede.domain.engine import ClaimResult
from stampede.domain.models import BundleLine, CampaignSpec, PresaleCodeBatch
from stampede.domain.refunds import RefundRequest
from stampede.errors import ValidationError
from stampede.state import keys, records
from tests.conftest import iso


def bundle_spec(stock: int = 10, merch: int = 10, per_user: int | None = None,
                **extra: Any) -> CampaignSpec:
    limits: dict[str, Any] = {"max_per_claim": 4}
    if per_user is not None:
        limits["per_user"] = per_user
    raw = {"name": "gig", "opens_at": iso(-60), "closes_at": iso(3600), "limits": limits,
           "skus": [{"sku": "tkt", "price": 5000, "waves": [{"at": iso(-30), "qty": stock}]},
                    {"sku": "tee", "price": 2000, "per_user": 2,
                     "waves": [{"at": iso(-30), "qty": merch}]},
                    {"sku": "cap", "price": 900, "waves": [{"at": iso(-30), "qty": merch}]}],
           "bundles": {"fan": {"lines": [{"sku": "tkt", "qty": 1}, {"sku": "tee", "qty": 1}]}},
           **extra}
    return msgspec.convert(raw, CampaignSpec)


def lines(*pairs: tuple[str, int]) -> list[BundleLine]:
    return [BundleLine(sku=s, qty=q) for s, q in pairs]


async def _stock(engine: Engine, cid: str) -> dict[str, tuple[int, int, int]]:
    stats = await engine.stats(cid)
    assert stats is not None
    return {s.sku: (s.available, s.held, s.sold) for s in stats.skus}


async def test_a_spec_bundle_is_held_priced_confirmed_whole(engine: Engine) -> None:
    await engine.define_campaign("b1", bundle_spec())
    r = await engine.claim_bundle("b1", "u1", bundle="fan")
    assert r.outcome is Outcome.OK and r.claim and r.claim.lines
    assert r.claim.bundle == "fan" and r.claim.price == 7000
    assert [(x.sku, x.qty, x.price) for x in r.claim.lines] == [("tkt", 1, 5000),
                                                                ("tee", 1, 2000)]
    assert (await _stock(engine, "b1"))["tee"] == (9, 1, 0)
    seen = await engine.get_claim(r.claim.claim_id, "u1")
    assert seen and seen.lines and [x.claim_id for x in seen.lines] == \
        [x.claim_id for x in r.claim.lines]
    assert await engine.get_claim(r.claim.claim_id, "u2") is None
    done = await engine.confirm(r.claim.claim_id, "u1")
    assert done.outcome is Outcome.OK and done.claim and done.claim.status == "confirmed"
    assert done.claim.lines and {x.status for x in done.claim.lines} == {"confirmed"}
    st = await _stock(engine, "b1")
    assert st["tkt"] == (9, 0, 1) and st["tee"] == (9, 0, 1)
    stats = await engine.stats("b1")
    assert stats and {s.sku: s.revenue for s in stats.skus}["tee"] == 2000
    assert (stats.claims_by_outcome["bundles"], stats.claims_by_outcome["held"]) == (1, 2)


async def test_all_or_nothing_each_line_checked(engine: Engine) -> None:
    await engine.define_campaign("b2", bundle_spec(stock=10, merch=1))
    assert (await engine.claim("b2", "x", "tee", 1)).outcome is Outcome.OK  # merch gone
    r = await engine.claim_bundle("b2", "u1", lines=lines(("tkt", 2), ("tee", 1)))
    assert r.outcome is Outcome.SOLD_OUT and r.line == 1
    assert (await _stock(engine, "b2"))["tkt"] == (10, 0, 0)  # nothing of line 0 held
    # the per-SKU limit of one line refuses the whole claim
    await engine.define_campaign("b2b", bundle_spec())
    assert (await engine.claim("b2b", "u1", "tee", 2)).outcome is Outcome.OK
    r = await engine.claim_bundle("b2b", "u1", lines=lines(("tkt", 1), ("tee", 1)))
    assert r.outcome is Outcome.LIMIT_EXCEEDED and r.reason == "per_sku" and r.line == 1
    assert r.params == {"limit": 2, "held": 2}
    assert (await _stock(engine, "b2b"))["tkt"] == (10, 0, 0)
    r = await engine.claim_bundle("b2b", "u1", lines=lines(("tkt", 1), ("cap", 5)))
    assert r.outcome is Outcome.INVALID and r.reason == "max_per_claim" and r.line == 1


async def test_per_user_limit_counts_every_line(engine: Engine) -> None:
    await engine.define_campaign("b3", bundle_spec(per_user=3))
    r = await engine.claim_bundle("b3", "u1", lines=lines(("tkt", 2), ("cap", 2)))
    assert r.outcome is Outcome.LIMIT_EXCEEDED and r.reason == "per_user" and r.line == 1
    assert (await engine.claim_bundle("b3", "u1", lines=lines(("tkt", 2), ("cap", 1)))
            ).outcome is Outcome.OK
    r = await engine.claim("b3", "u1", "cap", 1)
    assert r.outcome is Outcome.LIMIT_EXCEEDED and r.params == {"limit": 3, "held": 3}


async def test_cancel_and_expiry_release_every_line(engine: Engine) -> None:
    await engine.define_campaign("b4", bundle_spec(hold_ttl_s=1))
    a = await engine.claim_bundle("b4", "u1", bundle="fan")
    b = await engine.claim_bundle("b4", "u2", lines=lines(("cap", 2), ("tkt", 1)))
    assert a.claim and b.claim and a.claim.lines
    # cancelling by one line's id cancels the bundle
    gone = await engine.cancel(a.claim.lines[1].claim_id, "u1")
    assert gone.outcome is Outcome.OK
    view = await engine.get_claim(a.claim.claim_id, "u1")
    assert view and view.lines and {x.status for x in view.lines} == {"cancelled"}
    await engine.set_clock_offset("b4", 2000)
    await engine.sweep("b4")
    view = await engine.get_claim(b.claim.claim_id, "u2")
    assert view and view.lines and {x.status for x in view.lines} == {"expired"}
    assert await _stock(engine, "b4") == {"tkt": (10, 0, 0), "tee": (10, 0, 0),
                                          "cap": (10, 0, 0)}
    assert (await engine.confirm(b.claim.claim_id, "u2")).outcome is Outcome.HOLD_EXPIRED


async def test_an_idempotent_retry_returns_the_same_bundle(engine: Engine) -> None:
    await engine.define_campaign("b5", bundle_spec())
    first = await engine.claim_bundle("b5", "u1", bundle="fan", idempotency_key="k1")
    again = await engine.claim_bundle("b5", "u1", bundle="fan", idempotency_key="k1")
    assert first.claim and again.claim and again.claim.claim_id == first.claim.claim_id
    assert again.claim.lines == first.claim.lines and again.claim.price == 7000
    other = await engine.claim_bundle("b5", "u1", lines=lines(("tkt", 1)),
                                      idempotency_key="k1")
    assert other.outcome is Outcome.IDEMPOTENCY_MISMATCH
    assert (await _stock(engine, "b5"))["tkt"] == (9, 1, 0)


async def test_a_retried_batch_answers_its_bundles_again(engine: Engine) -> None:
    """What redis-py does after a lost reply: the same script, same arguments. The
    bundles the first run placed are answered again, line by line, nothing held twice;
    so is a second claim of one batch under the first's Idempotency-Key."""
    from stampede.domain.bundles import PendingBundle

    await engine.define_campaign("b14", bundle_spec(per_user=6))
    batch = [PendingBundle(keys.new_claim_id("b14"), user, "", 2, key, name="fan")
             for user, key in (("u1", None), ("u2", "k"), ("u2", "k"))]
    first = await engine._bundle_batch("b14", batch)
    assert [r.outcome for r in first] == [Outcome.OK] * 3
    assert first[1].claim and first[2].claim and first[1].claim.lines
    assert first[2].claim.claim_id == first[1].claim.claim_id
    assert first[2].claim.lines == first[1].claim.lines
    again = await engine._bundle_batch("b14", batch)
    assert again == first
    assert (await _stock(engine, "b14"))["tkt"] == (8, 2, 0)


@pytest.mark.parametrize("bundles,field", [
    ({"x": {"lines": [{"sku": "nope", "qty": 1}]}}, "bundles.x.lines[0].sku"),
    ({"x": {"lines": [{"sku": "tkt", "qty": 1}, {"sku": "tkt", "qty": 2}]}},
     "bundles.x.lines[1].sku"),
    ({"x": {"lines": [{"sku": "tkt", "qty": 5}]}}, "bundles.x.lines[0].qty"),
])
async def test_a_bad_bundle_is_refused_naming_its_field(engine: Engine, bundles: Any,
                                                        field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace("[", r"\[").replace("]", r"\]")):
        await engine.define_campaign("b6", bundle_spec(bundles=bundles))
    assert await engine.stats("b6") is None  # nothing changed


async def test_claims_of_lines_refused_before_the_script(engine: Engine) -> None:
    await engine.define_campaign("b7", bundle_spec())
    r = await engine.claim_bundle("b7", "u1", lines=lines(("tkt", 1), ("tkt", 1)))
    assert (r.outcome, r.reason, r.line) == (Outcome.INVALID, "line_twice", 1)
    r = await engine.claim_bundle("b7", "u1", bundle="nope")
    assert r.outcome is Outcome.NOT_FOUND and r.reason == "no_bundle"
    r = await engine.claim_bundle("b7", "u1", lines=lines(("tkt", 1), ("nope", 1)))
    assert r.outcome is Outcome.NOT_FOUND and r.reason == "no_sku" and r.line == 1


async def test_thousands_of_concurrent_bundles_and_singles(engine: Engine) -> None:
    """Two SKUs of 150 units; 700 users each send a bundle (tkt+tee) and two singles at
    once, 2100 claims: no SKU oversold, every bundle whole, per-user limits exact."""
    await engine.define_campaign("b8", bundle_spec(stock=150, merch=150, per_user=3))
    users = [f"u{i}" for i in range(700)]
    # warm both scripts up (a first call loads its script), on a SKU nobody contends for
    warm = await engine.claim_bundle("b8", "warm", lines=lines(("cap", 1)))
    assert warm.claim is not None
    assert (await engine.claim("b8", "warm", "cap", 1)).outcome is Outcome.OK

    rng = random.Random(8)
    results: list[list[ClaimResult]] = []
    for first in range(0, len(users), 35):  # rounds of 105 claims submitted at once,
        batch = users[first:first + 35]      # in a shuffled order: either kind may go first
        calls: list[tuple[int, int, Awaitable[ClaimResult]]] = []
        for n, user in enumerate(batch):
            calls += [(n, 0, engine.claim_bundle("b8", user,
                                                 lines=lines(("tkt", 1), ("tee", 1)))),
                      (n, 1, engine.claim("b8", user, "tkt", 1)),
                      (n, 2, engine.claim("b8", user, "tee", 2))]
        rng.shuffle(calls)
        got = await asyncio.gather(*(c for _, _, c in calls))
        by_user: list[list[Any]] = [[None] * 3 for _ in batch]
        for (n, kind, _), r in zip(calls, got, strict=True):
            by_user[n][kind] = r
        results += by_user
    assert sum(1 for rs in results for r in rs if r.outcome is Outcome.OK) > 0
    st = await _stock(engine, "b8")
    assert st["tkt"] == (0, 150, 0) and st["tee"] == (0, 150, 0)  # all taken, none twice
    k = keys.campaign_keys("b8")
    held: Counter[str] = Counter()
    per_sku: Counter[tuple[str, str]] = Counter()
    raw = await engine.redis.hgetall(k.claims)
    for text in raw.values():
        c = records.CLAIM.decode(text)
        held[c.user] += c.qty
        per_sku[(c.user, c.sku)] += c.qty
    held["warm"] = 0
    assert max(held.values()) <= 3 and max(per_sku[u, "tee"] for u in users) <= 2
    held_units: Counter[str] = Counter()
    for (_, sku), n in per_sku.items():
        held_units[sku] += n
    assert held_units["tkt"] == 150 and held_units["tee"] == 150
    for rs in results:  # every bundle held is whole in Redis
        b = rs[0]
        if b.outcome is Outcome.OK:
            assert b.claim and b.claim.lines and len(b.claim.lines) == 2
            assert all(x.claim_id in raw for x in b.claim.lines)
    users_hash = await engine.redis.hgetall(k.users)
    for u in users:  # one field per user: its units by SKU
        assert sum(records.decode_units(users_hash.get(u)).values()) == held[u]
        assert records.decode_units(users_hash.get(u)).get("tee", 0) == per_sku[u, "tee"]
    lines_of = {f[3:]: v.split("|")[1].split(",") for f, v in users_hash.items()
                if f.startswith("~b|") and f[3:] != warm.claim.claim_id}
    assert len(lines_of) == sum(1 for rs in results if rs[0].outcome is Outcome.OK) > 0
    for ids in lines_of.values():  # no line without its bundle, no bundle without a line
        assert sorted(records.CLAIM.decode(raw[i]).sku for i in ids) == ["tee", "tkt"]
    marked = {f[3:] for f in users_hash if f.startswith("~l|")}
    assert marked == {i for ids in lines_of.values() for i in ids} | {
        x.claim_id for x in warm.claim.lines or ()}
    # one event per bundle, carrying each line as its record has it; none per line
    held_events = [f for _, f in await engine.redis.xrange(k.events)
                   if f["type"] in ("claim_held", "bundle_held")]
    bundled = [f for f in held_events if f["type"] == "bundle_held"]
    assert len(bundled) == len(lines_of) + 1  # (and the warm-up's)
    assert not any("bundle" in f for f in held_events if f["type"] == "claim_held")
    for f in bundled:
        items = records.decode_bundle_items(f["items"])
        ids = f["lines"].split(",")
        assert len(items) == len(ids) > 0
        for i, item in zip(ids, items, strict=True):
            c = records.CLAIM.decode(raw[i])
            assert (c.sku, c.qty, c.price, c.alloc) == (item.sku, item.qty, item.price,
                                                        item.alloc)


async def test_a_bundle_is_refunded_whole_or_a_line_alone(engine: Engine) -> None:
    await engine.define_campaign("b9", bundle_spec())
    a = await engine.claim_bundle("b9", "u1", bundle="fan")
    b = await engine.claim_bundle("b9", "u2", lines=lines(("cap", 2), ("tkt", 1)))
    assert a.claim and b.claim and b.claim.lines
    for r, user in ((a, "u1"), (b, "u2")):
        assert r.claim and (await engine.confirm(r.claim.claim_id, user)).outcome is Outcome.OK
    some = await engine.refunds.refund(a.claim.claim_id, RefundRequest(qty=1), "ops")
    assert (some.outcome, some.reason) == (Outcome.CONFLICT, "refund_bundle_units")
    whole = await engine.refunds.refund(a.claim.claim_id, RefundRequest(), "ops",
                                        op_key="r1")
    assert whole.view and (whole.view.refunded, whole.view.left, whole.view.amount) == \
        (2, 0, 7000)
    again = await engine.refunds.refund(a.claim.claim_id, RefundRequest(), "ops",
                                        op_key="r1")
    assert again.view == whole.view
    # one line alone by its own id, then the rest by the bundle's
    cap = await engine.refunds.refund(b.claim.lines[0].claim_id, RefundRequest(qty=1), "ops")
    assert cap.view and cap.view.amount == 900
    rest = await engine.refunds.refund(b.claim.claim_id, RefundRequest(), "ops")
    assert rest.view and (rest.view.refunded, rest.view.amount) == (2, 900 + 5000)
    assert await _stock(engine, "b9") == {"tkt": (10, 0, 0), "tee": (10, 0, 0),
                                          "cap": (10, 0, 0)}
    view = await engine.get_claim(b.claim.claim_id, "u2")
    assert view and view.status == "refunded"


async def test_a_released_bundle_restocks_each_waitlist_first(engine: Engine) -> None:
    await engine.define_campaign("b10", bundle_spec(merch=1, waitlist={}))
    a = await engine.claim_bundle("b10", "u1", bundle="fan")
    assert a.claim
    outcome, entry, _ = await engine.join_waitlist("b10", "u2", "tee")
    assert outcome is Outcome.OK and entry
    # a waitlist is ahead: a bundle needing the SKU is sold out
    r = await engine.claim_bundle("b10", "u3", lines=lines(("tkt", 1), ("tee", 1)))
    assert r.outcome is Outcome.SOLD_OUT and r.line == 1
    assert (await engine.cancel(a.claim.claim_id, "u1")).outcome is Outcome.OK
    _, offered = await engine.waitlist("b10", "u2")
    assert [(e.sku, e.status) for e in offered] == [("tee", "offered")]
    assert (await _stock(engine, "b10"))["tkt"] == (10, 0, 0)
    assert (await _stock(engine, "b10"))["tee"] == (0, 1, 0)  # held as u2's offer


async def test_the_claimant_is_checked_once_per_bundle(engine: Engine) -> None:
    """A presale code lends its tier to the whole bundle and spends one use; the guard
    and the waiting room see one claim."""
    await engine.define_campaign("b11", bundle_spec(
        phases=[{"name": "fans", "opens_at": iso(-30), "tiers": ["fan"]}]))
    _, _, batch = await engine.presale_codes.issue(
        "b11", PresaleCodeBatch(count=1, tier="fan", uses=1), "ops")
    assert batch is not None
    code = list(engine.presale_codes.csv_lines("b11", batch))[1].split(",")[0]
    assert (await engine.claim_bundle("b11", "u1", bundle="fan")).outcome is \
        Outcome.NOT_ELIGIBLE
    held = await engine.claim_bundle("b11", "u1", bundle="fan", code=code)
    assert held.outcome is Outcome.OK
    again = await engine.claim_bundle("b11", "u2", bundle="fan", code=code)
    assert again.outcome is Outcome.PRESALE_CODE_USED
    stats = await engine.stats("b11")
    assert stats and [(b.codes_used, b.claims) for b in stats.presale_codes] == [(1, 1)]

    await engine.define_campaign("b12", bundle_spec(
        throttle={"user": {"per_s": 0.01, "burst": 1}}))
    assert (await engine.claim_bundle("b12", "u1", bundle="fan")).outcome is Outcome.OK
    r = await engine.claim_bundle("b12", "u1", lines=lines(("cap", 1)))
    assert r.outcome is Outcome.THROTTLED and r.retry_after_ms

    await engine.define_campaign("b13", bundle_spec(waiting_room={"rate_per_s": 1}))
    r = await engine.claim_bundle("b13", "u1", bundle="fan")
    assert r.outcome is Outcome.ADMISSION_REQUIRED
    assert (await _stock(engine, "b13"))["tkt"] == (10, 0, 0)


async def test_a_sharded_campaign_takes_no_bundles(engine: Engine) -> None:
    """A user's shard holds only its share of each SKU and bundles do not borrow: the
    spec's bundles are refused with shards, and a claim of lines answers bundle_sharded
    before anything is held."""
    with pytest.raises(ValidationError, match="^bundles: not supported with shards > 1"):
        await engine.define_campaign("b10", bundle_spec(shards=2))
    spec = msgspec.structs.replace(bundle_spec(shards=2), bundles={})
    assert await engine.define_campaign("b10", spec) == (Outcome.OK, True)
    r = await engine.claim_bundle("b10", "u1", lines=lines(("tkt", 1), ("tee", 1)))
    assert (r.outcome, r.reason) == (Outcome.CONFLICT, "bundle_sharded")
    stats = await engine.stats("b10")
    assert stats is not None and all(s.held == 0 for s in stats.skus)
    assert (await engine.claim("b10", "u1", "tkt", 1)).outcome is Outcome.OK  # one SKU: yes
