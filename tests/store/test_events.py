"""Stored events decode to their typed Structs, and a type this version does not know
is kept, not dead-lettered, while the projections wait before it."""

import json

import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from stampede import Engine
from stampede.durable import events
from stampede.durable.audit import audit
from stampede.durable.events import TYPES, BadEvent, Event, Unknown, from_row, to_row
from stampede.durable.persister import Persister
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import records
from stampede.state.keys import campaign_keys, events_key
from tests.conftest import campaign_spec
from tests.store.helpers import assert_store_matches_redis, store_rows

_CLAIM = {"claim": "c1.0123456789abcdef0123", "user": "u1", "sku": "tee", "qty": "2"}
_COUPON = {"coupon": "d1.c1", "user": "u1", "template": "five"}

# The `data` of one stored row per type, as the scripts write it (every value a
# string); a second row where older scripts wrote fewer fields.
ROWS: dict[str, list[dict[str, str]]] = {
    "campaign_defined": [{"spec": "{}", "actor": "ops", "replaced": "0", "meta": "{}"},
                         {"spec": "{}"}],
    "campaign_patched": [{"actor": "ops", "before": "{}", "after": '{"state":"paused"}'}],
    "wave_released": [{"sku": "tee", "qty": "5", "wave": "0"}],
    "stock_adjusted": [{"sku": "tee", "delta": "-2", "actor": "ops", "before": "5",
                        "after": "3"}, {"sku": "tee", "delta": "4", "actor": "ops"}],
    "claim_held": [{**_CLAIM, "price": "1999", "deadline": "1700000060000", "idem": "k",
                    "fp": "ab", "identity": "p1", "offer": "1"},
                   {**_CLAIM, "price": "1999", "deadline": "1700000060000"},
                   {**_CLAIM, "price": "1999", "deadline": "1700000060000", "code": "1.17"},
                   {**_CLAIM, "price": "1999", "deadline": "1700000060000",
                    "bundle": "gig.0123456789abcdef0123"}],
    "claim_confirmed": [{**_CLAIM, "price": "1999"}],
    "claim_expired": [_CLAIM],
    "claim_cancelled": [_CLAIM],
    "waitlist_joined": [{"user": "u1", "sku": "tee", "qty": "1", "wseq": "000000000007"},
                        {"user": "u1", "sku": "tee", "qty": "1"}],
    "waitlist_left": [{"user": "u1", "sku": "tee", "qty": "1"}],
    "waitlist_skipped": [{"user": "u1", "sku": "tee", "qty": "1", "reason": "limit_exceeded"}],
    "offer_made": [{**_CLAIM, "deadline": "1700000060000"}],
    "offer_accepted": [_CLAIM],
    "offer_lapsed": [_CLAIM],
    "offer_declined": [_CLAIM],
    "coupon_issued": [{**_COUPON, "claim": "c1.x", "uses": "2", "value": "1000",
                       "valid_from": "0", "valid_to": "1800000000000", "locator": "AB12"}],
    "coupon_redeemed": [{"coupon": "d1.c1", "redemption": "r1", "merchant": "m1",
                         "order": "o1", "amount": "5000", "discount": "500", "uses_left": "1",
                         "user": "u1", "template": "five", "fp": "cd"},
                        {"coupon": "d1.c1", "redemption": "r1", "merchant": "m1",
                         "order": "o1", "amount": "5000", "discount": "500", "uses_left": "1",
                         "user": "u1", "template": "five"},
                        {"coupon": "d1.c1", "redemption": "r2", "merchant": "m1",  # rules
                         "order": "o2", "amount": "900", "discount": "100", "uses_left": "0",
                         "user": "u1", "template": "five", "fp": "ef",
                         "lines": '[["latte","drinks",1,900,100]]'}],
    "coupon_rolled_back": [{"coupon": "d1.c1", "redemption": "r1", "merchant": "m1",
                            "discount": "500", "uses_left": "2", "template": "five"}],
    "coupon_expired": [{**_COUPON, "uses_left": "1"}],
    "coupon_transferred": [{**_COUPON, "from": "u0", "locator": "CD34", "token": "t",
                            "nonce": "n", "counted": "1"},
                           {**_COUPON, "from": "u0", "locator": "CD34"}],
    "gift_offered": [{"coupon": "d1.c1", "user": "u0", "expires": "1700000060000",
                      "token": "t"}, {"coupon": "d1.c1", "user": "u0", "expires": "1"}],
    "requests_refused": [{"n": "2", "refusals": "u1:throttled;u2:blocked"}],
    # codes users type
    "code_claimed": [{"claim": "d1.x", "user": "u1", "code": "RABCDEFGH", "kind": "referral",
                      "qty": "1", "referrer": "u0", "reward_claim": "d1.y", "identity": "p1"},
                     {"claim": "d1.x", "user": "u1", "code": "SUMMER25", "kind": "promo",
                      "qty": "2"}],
    "referral_code_minted": [{"user": "u0", "code": "RABCDEFGH", "identity": "p0"}],
    # points exchange
    "points_exchanged": [{"claim": "d1.x", "user": "u1", "sku": "mug", "qty": "1",
                          "debit": "ab" * 16, "points": "300"}],
    # paid vouchers
    "voucher_held": [{"claim": "d1.v", "user": "u1", "sku": "coffee10", "qty": "1",
                      "amount": "3900", "value": "4500", "deadline": "1700000600000"}],
    "voucher_paid": [{"claim": "d1.v", "user": "u1", "sku": "coffee10", "qty": "1",
                      "amount": "3900", "payment": "psp_1", "idem": "k1"}],
    "voucher_refunded": [{"claim": "d1.v", "user": "u1", "sku": "coffee10", "qty": "1",
                          "actor": "u1", "amount": "3900", "value": "4500",
                          "coupons": "d1.c1", "idem": ""}],
    # coupon rules: a live change
    "coupon_drop_patched": [{"actor": "op", "before": '{"cp_per_day":false}',
                             "after": '{"cp_per_day":"5"}', "grow": '{"five":{"vt":-1,"vd":9}}',
                             "extended": "3"},
                            {"actor": "op", "before": "{}", "after": "{}"}],
    # after-sale
    "claim_refunded": [{**_CLAIM, "amount": "3998", "left": "0", "to": "restock",
                        "actor": "ops", "reason": "ill", "buyer": "1", "idem": "k", "fp": "f"},
                       {**_CLAIM, "amount": "3998", "left": "0", "to": "retire",
                        "actor": "ops"}],
    "ticket_checked_in": [{"ticket": "c1.0123456789abcdef0123-1", "claim": _CLAIM["claim"],
                           "user": "u1", "sku": "tee", "gate": "north", "scanner": "n1",
                           "at": "1700000060000"}],
    "transfer_offered": [{"claim": _CLAIM["claim"], "user": "u1", "expires": "1700000060000",
                          "token": "ab"}],
    "claim_transferred": [{**_CLAIM, "new_claim": "c1.00000000000000000000", "from": "u0",
                           "price": "1999", "created": "1", "deadline": "2", "token": "ab"},
                          {**_CLAIM, "new_claim": "c1.00000000000000000000", "from": "u0",
                           "price": "1999", "created": "1", "deadline": "2"}],
    "presale_codes_issued": [{"batch": "1", "count": "500", "uses": "1", "bind": "0",
                              "tier": "fan-code", "actor": "ops"}],
    "segment_changed": [{"segment": "insiders", "op": "add", "users": "ann,bob", "n": "2",
                         "actor": "ops"}],
    # presales: allocations
    "allocation_returned": [{"sku": "seated", "allocation": "partner", "qty": "40",
                             "by": "schedule"},
                            {"sku": "seated", "allocation": "app", "qty": "0", "by": "ops",
                             "actor": "ops"}],
    # presales: bundles
    "bundle_held": [{"claim": "gig.0123456789abcdef0123", "user": "u1", "bundle": "fan",
                     "lines": "gig.aaaaaaaaaaaaaaaaaaaa,gig.bbbbbbbbbbbbbbbbbbbb",
                     "price": "7000", "deadline": "1700000600000"},
                    {"claim": "gig.0123456789abcdef0124", "user": "u2", "bundle": "",
                     "lines": "gig.cccccccccccccccccccc", "price": "5000",
                     "deadline": "1700000600000", "idem": "{c:gig}:idem:u2:k",
                     "fp": "lines:tkt:1"},
                    # one event for the whole bundle: its lines in `items`
                    {"claim": "gig.0123456789abcdef0125", "user": "u3", "bundle": "fan",
                     "lines": "gig.dddddddddddddddddddd,gig.eeeeeeeeeeeeeeeeeeee",
                     "price": "6500", "deadline": "1700000600000",
                     "items": "tkt|1|4500|app:1;tee|1|2000|", "identity": "h-p3",
                     "channel": "app", "code": "1.7"}],
    # waiting room: tickets as events
    "queue_ticket_issued": [{"user": "u1", "place": "0.4172"}, {"user": "u2", "place": "7"}],
    "queue_admitted": [{"first": "0", "count": "50", "until": "1700000300000",
                        "tokens": "250", "at": "1700000000000"}],
    "queue_lapsed": [{"count": "3"}],
}


def test_every_type_has_a_stored_row_here() -> None:
    assert set(ROWS) == set(TYPES)


async def test_a_stored_row_of_each_type_decodes_and_stores_back_unchanged(
        store: Store) -> None:
    rows = [{"campaign_id": "c1", "seq": i, "type": etype, "ts": 1_700_000_000_000 + i,
             "epoch": 2, "stream_id": f"{i}-0", "data": json.dumps(data)}
            for i, (etype, data) in enumerate(
                ((e, d) for e, ds in ROWS.items() for d in ds), start=1)]
    async with store.begin() as conn:
        await conn.execute(t.events.insert(), rows)
    stored = await store_rows(store, t.events, "c1")
    assert len(stored) == len(rows)
    for row in stored:
        ev = from_row(row)
        assert type(ev) is TYPES[row.type] and to_row(ev) == dict(row._mapping)
        body = msgspec.structs.asdict(ev)
        for name, value in json.loads(row.data).items():  # every field typed, ints as ints
            field = "giver" if name == "from" else name
            assert str(int(body[field]) if isinstance(body[field], bool) else body[field]) \
                == value
    held = from_row(next(r for r in stored if r.type == "claim_held"))
    assert isinstance(held, events.ClaimHeld) and held.qty == 2 and held.offer is True


def test_a_bundle_held_gives_its_lines_as_the_holds_an_older_version_wrote() -> None:
    """One bundle_held carries every line (`items`); in the older shape (no `items`) its
    lines were claim_held events of their own, so it gives none."""
    def entry(body: dict[str, str]) -> events.BundleHeld:
        ev = events.from_entry("gig", "8-0", {"seq": "8", "type": "bundle_held",
                                              "ts": "5", "epoch": "1", **body})
        assert isinstance(ev, events.BundleHeld)
        return ev

    older, newer = (entry(b) for b in (ROWS["bundle_held"][0], ROWS["bundle_held"][2]))
    assert older.held_lines() == [] and events.claim_holds(older) == []
    lines = newer.held_lines()
    assert events.claim_holds(newer) == lines
    assert [(x.claim, x.user, x.sku, x.qty, x.price, x.deadline, x.bundle, x.identity,
             x.alloc, x.channel, x.code, x.seq, x.ts, x.epoch) for x in lines] == [
        ("gig.dddddddddddddddddddd", "u3", "tkt", 1, 4500, 1700000600000,
         "gig.0123456789abcdef0125", "h-p3", "app:1", "app", "1.7", 8, 5, 1),
        ("gig.eeeeeeeeeeeeeeeeeeee", "u3", "tee", 1, 2000, 1700000600000,
         "gig.0123456789abcdef0125", "h-p3", "", "", "", 8, 5, 1)]
    assert records.encode_bundle_items(records.decode_bundle_items(newer.items)) == \
        newer.items


def test_an_entry_read_by_position_is_the_event_read_by_name() -> None:
    """The persister's fast path (header by position, from the flat reply) decodes every
    type and layout exactly as the general path does; anything else falls back to it."""
    for etype, bodies in ROWS.items():
        for body in bodies:
            header = {"seq": "7", "type": etype, "ts": "1700000000000", "epoch": "2"}
            flat = [x for pair in {**header, **body}.items() for x in pair]
            fast = events.from_flat("c1", "5-0", flat)
            slow = events.from_entry("c1", "5-0", {**header, **body})
            assert fast == slow and json.loads(fast.raw) == body, etype
            assert (fast.seq, fast.epoch, fast.stream_id) == (7, 2, "5-0")
    hand = ["type", "wave_released", "seq", "3", "ts", "1", "sku", "tee", "qty", "4",
            "wave", "0"]  # no epoch, header out of emit()'s order
    ev = events.from_flat("c1", "1-0", hand)
    assert isinstance(ev, events.WaveReleased) and (ev.seq, ev.qty, ev.epoch) == (3, 4, 0)
    for bad in (["seq", "x", "type", "claim_expired", "ts", "1", "epoch", "0"],
                ["seq", "0", "type", "claim_expired", "ts", "1", "epoch", "0"]):
        with pytest.raises(BadEvent):
            events.from_flat("c1", "1-0", bad)


def test_a_known_type_with_a_bad_field_is_a_bad_event() -> None:
    with pytest.raises(BadEvent, match="qty"):
        events.from_entry("c1", "1-0", {"seq": "1", "type": "claim_expired", "ts": "1",
                                        **_CLAIM, "qty": "two"})
    with pytest.raises(BadEvent, match="sku"):
        events.from_entry("c1", "1-0", {"seq": "1", "type": "wave_released", "ts": "1",
                                        "qty": "1", "wave": "0"})


def test_an_unknown_type_keeps_its_fields_and_a_newer_field_is_kept_too() -> None:
    ev = events.from_entry("c1", "9-0", {"seq": "9", "type": "prize_drawn", "ts": "5",
                                         "epoch": "1", "winner": "u1"})
    assert isinstance(ev, Unknown) and ev.name == "prize_drawn"
    assert to_row(ev)["type"] == "prize_drawn" and json.loads(to_row(ev)["data"]) == \
        {"winner": "u1"}
    newer = events.from_entry("c1", "3-0", {"seq": "3", "type": "claim_expired", "ts": "1",
                                            **_CLAIM, "reason": "swept"})
    assert isinstance(newer, events.ClaimExpired)
    assert json.loads(to_row(newer)["data"])["reason"] == "swept"


class PrizeDrawn(Event, tag="prize_drawn"):
    """A type a newer version would know."""
    winner: str


async def _append_unknown(redis: "Redis[str]", cid: str) -> int:
    """What a newer script would do: the next seq, a type this version lacks."""
    seq = int(await redis.hincrby(campaign_keys(cid).meta, "evseq", 1))
    await redis.xadd(events_key(cid), {"seq": str(seq), "type": "prize_drawn", "ts": "1",
                                       "epoch": "0", "winner": "u1"})
    return seq


async def test_an_unknown_type_is_stored_and_the_projections_wait_before_it(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await sale.define_campaign("c1", campaign_spec(stock=5))
    seq = await _append_unknown(raw_redis, "c1")
    await sale.claim("c1", "u1", "tee")
    await persister.drain()
    assert await store_rows(store, t.dead_letters, "c1") == []
    (row,) = [r for r in await store_rows(store, t.events, "c1") if r.seq == seq]
    assert (row.type, json.loads(row.data)) == ("prize_drawn", {"winner": "u1"})
    camp = (await store_rows(store, t.campaigns, "c1"))[0]
    assert (camp.applied_seq, camp.max_seq) == (seq - 1, seq + 1)  # the hold waits behind it
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["c1"]["violation_samples"]}
    assert kinds == {"unknown_event"}  # and the projections agree up to it

    # A version that knows the type folds on from the stored rows at its next event.
    monkeypatch.setitem(events._BODY, "prize_drawn",
                        msgspec.json.Decoder(PrizeDrawn, strict=False))
    await sale.claim("c1", "u2", "tee")
    await persister.drain()
    await assert_store_matches_redis(sale, store, "c1")
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t.events).where(t.events.c.seq == seq))).all()
    assert isinstance(from_row(rows[0]), PrizeDrawn)


