"""Python and Lua read and write the same record and argument shapes.

Every shape of stampede/state/records.py goes Python -> Lua -> Python through the
generated Lua helpers on a real server, and the names Lua sees are checked against
the Struct's fields. Then the records the real operations write are decoded in Python.
"""

import re
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from stampede import Engine, Outcome, lua
from stampede.state import keys, records
from stampede.state.records import (
    AccountsLimit,
    ClaimArg,
    CouponClaimArg,
    GuardArg,
    GuardConfig,
    PowDifficulty,
    RateLimit,
    RiskCheck,
    TextCodec,
)
from stampede.state.scripts import OPERATIONS
from tests.conftest import campaign_spec, iso
from tests.coupons.helpers import drop_spec
from tests.state.conftest import run_lua

TEXT = records.CAMPAIGN_RECORDS + records.COUPON_RECORDS + records.REFUND_RECORDS + (
    records.BUNDLE_LINE,)
_unpack = msgspec.msgpack.Decoder()


def _sample(codec: TextCodec[Any], full: bool) -> Any:
    """A record with every field set (full) or at its emptiest ('' , 0, None, [])."""
    values: list[Any] = []
    for i, (name, kind) in enumerate(codec.fields):
        if kind == "str":
            values.append(f"{name}-{i}.x:y@z" if full else "")
        elif kind == "int":
            values.append(1_764_633_600_000 + i if full else 0)
        elif kind == "opt_int":
            values.append(-5 - i if full else None)
        else:
            values.append([f"{name}.{j}" for j in range(3)] if full else [])
    return codec.kind(*values)


def _named(value: Any) -> Any:
    """A Struct as Lua's table of it would pack: Python field names, no None."""
    if isinstance(value, msgspec.Struct):
        return {f: _named(getattr(value, f)) for f in value.__struct_fields__
                if getattr(value, f) is not None}
    if isinstance(value, list):
        return [_named(v) for v in value]
    return value


def _lists(value: Any) -> Any:
    """cmsgpack packs an empty Lua table as a map: read it as the empty list it was."""
    if isinstance(value, dict):
        return {k: [] if v == {} else _lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lists(v) for v in value]
    return value


@pytest.mark.parametrize("full", [True, False], ids=["full", "empty"])
@pytest.mark.parametrize("codec", TEXT, ids=lambda c: c.name)
async def test_a_record_goes_through_lua_unchanged(raw: "Redis[bytes]", codec: TextCodec[Any],
                                                   full: bool) -> None:
    record = _sample(codec, full)
    text = codec.encode(record)
    back = await run_lua(raw, f"return format_{codec.name}(parse_{codec.name}(ARGV[1]))",
                         args=[text])
    assert back.decode() == text
    assert codec.decode(back.decode()) == record


@pytest.mark.parametrize("full", [True, False], ids=["full", "empty"])
@pytest.mark.parametrize("codec", TEXT, ids=lambda c: c.name)
async def test_lua_reads_and_writes_a_record_by_its_field_names(
        raw: "Redis[bytes]", codec: TextCodec[Any], full: bool) -> None:
    record = _sample(codec, full)
    seen = await run_lua(raw, f"return cmsgpack.pack(parse_{codec.name}(ARGV[1]))",
                         args=[codec.encode(record)])
    assert _lists(_unpack.decode(seen)) == _named(record)
    # Lua writes one from a table of named fields (as the scripts do): Python reads it
    written = await run_lua(raw, f"return format_{codec.name}(cmsgpack.unpack(ARGV[1]))",
                            args=[msgspec.msgpack.encode(record)])
    assert codec.decode(written.decode()) == record


@pytest.mark.parametrize("units", [{}, {"tee": 1}, {"tee": 2, "cap-2": 1, "x_y": 40}])
async def test_a_users_units_field_reads_alike_in_lua_and_python(
        raw: "Redis[bytes]", units: dict[str, int]) -> None:
    text = records.encode_units(units)
    total, by = _unpack.decode(await run_lua(
        raw, "local t, by = parse_units(ARGV[1]); return cmsgpack.pack({t, by})", args=[text]))
    assert (total, by or {}) == (sum(units.values()), units)
    back = await run_lua(raw, "return format_units(cmsgpack.unpack(ARGV[1]))",
                         args=[msgspec.msgpack.encode({**units, "gone": 0})])
    assert records.decode_units(back.decode()) == units  # a SKU at 0 is left out
    assert records.decode_units(None) == {} and records.encode_units({"tee": 0}) == ""


@pytest.mark.parametrize("record", [
    records.ClaimRecord("held", "a|b", "tee", 1, 2, 3, 4),
    records.CouponAnswerRecord("fp", 0, "", "c1.x", 5, ["a,b"]),
    records.CouponAnswerRecord("fp", 0, "", "c1.x", 5, [""]),
])
def test_a_value_that_would_break_the_layout_is_refused(record: Any) -> None:
    codec = next(c for c in TEXT if isinstance(record, c.kind))
    with pytest.raises(ValueError):
        codec.encode(record)


def test_a_bundle_held_events_lines_read_back_and_refuse_their_separator() -> None:
    items = [records.BundleLineRecord("tkt", 2, 4500, "app:1,members:1"),
             records.BundleLineRecord("tee", 1, 2000)]
    text = records.encode_bundle_items(items)
    assert text == "tkt|2|4500|app:1,members:1;tee|1|2000|"
    assert records.decode_bundle_items(text) == items and records.decode_bundle_items("") == []
    with pytest.raises(ValueError):
        records.encode_bundle_items([records.BundleLineRecord("t;x", 1, 1)])


GUARD = GuardArg("dev-1", "10.1.2.0/24", 3600, 2, 18, 1_764_633_600_000, 21)
SALE_CLAIMS = [ClaimArg("c1.0123456789abcdef0123", "ann", "tee", 2, 0, -1, "tee:2"),
               ClaimArg("c1.aaaaaaaaaaaaaaaaaaaa", "bob@x", "cap", 1, 17, 1_764_633_600_123,
                        "cap:1", guard=GUARD),
               ClaimArg("c1.bbbbbbbbbbbbbbbbbbbb", "cat", "tee", 1, 0, -1, "tee:1",
                        ["vip", "fan-club"], "3.17", 22, k_code_device=26, k_code_network=27,
                        identity="h-cat", channel="app", guard=GUARD),
               ClaimArg("c1.cccccccccccccccccccc", "dan", "tee", 1, 0, -1, "tee:1", [], "?",
                        23)]
COUPON_CLAIMS = [CouponClaimArg("d1.0123456789abcdef0123", "ann", "five", 1, 24, 0, -1, "",
                                "seed", "five:1"),
                 CouponClaimArg("d1.bbbbbbbbbbbbbbbbbbbb", "bob", "pack", 3, 24, 25, 99,
                                "person-1", "s33d", "pack:3", GUARD)]
FULL_CONFIG = GuardConfig(
    pow=PowDifficulty(16, 2, 24), user=RateLimit(100, 5), device=RateLimit(50, 2),
    network=RateLimit(10, 20), campaign=RateLimit(1, 1000),
    accounts_per_device=AccountsLimit(3_600_000, 3, 10),
    accounts_per_network=AccountsLimit(60_000, 30, 100),
    risk=[RiskCheck("age", "challenge", below=86_400.0), RiskCheck("lapses", "reject", above=2.5),
          RiskCheck("recent", "challenge", above=3.0, below=100.0)],
    recent_window_ms=600_000)
MINIMAL_CONFIG = GuardConfig(pow=PowDifficulty(0, 0, 0))


@pytest.mark.parametrize(("name", "batch", "decode"), [
    ("claim_arg", SALE_CLAIMS, records.decode_claims),
    ("coupon_claim_arg", COUPON_CLAIMS, records.decode_coupon_claims),
])
async def test_a_claim_batch_goes_through_lua_unchanged(raw: "Redis[bytes]", name: str,
                                                        batch: Any, decode: Any) -> None:
    arg = records.encode_claims(batch)
    back = await run_lua(raw, f"""
local out, named = {{}}, {{}}
for i, a in ipairs(cmsgpack.unpack(ARGV[1])) do
  named[i] = {name}_from(a)
  out[i] = {name}_to(named[i])
end
return {{cmsgpack.pack(out), cmsgpack.pack(named)}}""", args=[arg])
    assert decode(back[0]) == batch
    assert _unpack.decode(back[1]) == _named(batch)


@pytest.mark.parametrize("cfg", [FULL_CONFIG, MINIMAL_CONFIG], ids=["full", "minimal"])
async def test_the_guard_config_goes_through_lua_unchanged(raw: "Redis[bytes]",
                                                           cfg: GuardConfig) -> None:
    text = records.encode_guard_config(cfg)
    back = await run_lua(raw, """
local cfg = guard_config_from(cjson.decode(ARGV[1]))
return {cjson.encode(guard_config_to(cfg)), cmsgpack.pack(cfg)}""", args=[text])
    assert records.decode_guard_config(back[0]) == cfg
    assert _lists(_unpack.decode(back[1])) == _lists(_named(cfg))


def test_the_guard_config_keeps_its_short_stored_names() -> None:
    # Stores hold `th` as campaign_defined events wrote it; recovery replays them.
    stored = ('{"pw":[16,2,24],"u":[100,5],"ad":[3600000,3,10],'
              '"r":[{"s":"age","a":"challenge","lt":86400.0}],"rw":600000}')
    cfg = records.decode_guard_config(stored)
    assert cfg.user == RateLimit(100, 5) and cfg.risk[0].below == 86_400.0
    assert msgspec.json.decode(records.encode_guard_config(cfg)) == msgspec.json.decode(stored)


@pytest.mark.parametrize("name", OPERATIONS)
def test_no_script_writes_a_record_layout_by_hand(name: str) -> None:
    # '|'-joined records are parsed and formatted by generated helpers only.
    text = lua.source_path(name).read_text()
    for include in re.findall(r"^--@include (\w+)", text, re.MULTILINE):
        if lua.include_path(include).exists():
            text += lua.include_path(include).read_text()
    assert "([^|]*)" not in text
    assert not re.search(r"table\.concat\([^)]*'\|'\)", text)


# -- what the real operations write, read in Python -------------------------------------


async def test_claim_records_and_answers_written_by_lua_decode(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=5, per_user=1,
                                                     waves=[{"at": iso(-30), "qty": 5},
                                                            {"at": iso(3000), "qty": 7}]))
    held = await engine.claim("c1", "ann", "tee", idempotency_key="k1")
    assert held.claim
    ks = keys.campaign_keys("c1")
    c = records.CLAIM.decode(await engine.redis.hget(ks.claims, held.claim.claim_id))
    assert (c.status, c.user, c.sku, c.qty, c.price) == ("held", "ann", "tee", 1, 1999)
    assert c.deadline > c.created
    first = records.CLAIM_ANSWER.decode(
        await engine.redis.get(keys.idempotency_key("c1", "ann", "k1")))
    assert (first.fingerprint, first.code, first.claim_id, first.deadline, first.created) == \
        ("tee:1", 0, held.claim.claim_id, c.deadline, c.created)
    refused = await engine.claim("c1", "ann", "tee", idempotency_key="k2")
    assert refused.outcome is Outcome.LIMIT_EXCEEDED
    answer = records.CLAIM_ANSWER.decode(
        await engine.redis.get(keys.idempotency_key("c1", "ann", "k2")))
    # a refusal keeps its detail ("reason:limit:held") where an answer keeps the claim id
    assert answer == records.ClaimAnswerRecord("tee:1", Outcome.LIMIT_EXCEEDED, "per_user:1:1",
                                               None, None, None)
    (wave,) = await engine.redis.zrange(ks.waves, 0, -1)
    assert records.WAVE.decode(wave) == records.WaveRecord(1, "tee", 7)


async def test_waitlist_and_stock_records_written_by_lua_decode(engine: Engine) -> None:
    await engine.define_campaign("c1", campaign_spec(stock=1, waitlist={"max_length": 5}))
    assert (await engine.claim("c1", "ann", "tee")).claim
    assert (await engine.join_waitlist("c1", "bob", "tee", qty=2))[0] is Outcome.OK
    ks = keys.campaign_keys("c1")
    entry = records.ENTRY.decode(await engine.redis.hget(ks.wlentries, "bob|tee"))
    assert (entry.status, entry.qty, entry.claim) == ("waiting", 2, "")
    (member,) = await engine.redis.zrange(ks.waitlist, 0, -1)
    assert records.WL_MEMBER.decode(member) == records.WlMemberRecord("tee", entry.seq, "bob")
    outcome, available = await engine.adjust_stock("c1", "tee", 3, "ops", op_key="op1")
    assert outcome is Outcome.OK
    stored = await engine.redis.get(keys.idempotency_key("c1", "ops", "stock:op1"))
    assert records.STOCK_ANSWER.decode(stored) == records.StockAnswerRecord(0, available, 4)


async def test_coupon_records_written_by_lua_decode(engine: Engine) -> None:
    await engine.define_campaign("d1", drop_spec(templates={"five": {
        "kind": "fixed_off", "face_value": 500, "valid_days": 30, "transferable": True}}))
    r = await engine.coupons.claim("d1", "ann", "five", idempotency_key="k1")
    assert r.outcome is Outcome.OK
    (view,) = r.view.coupons
    drop = keys.coupon_keys("d1").drop
    c = records.COUPON.decode(await engine.redis.hget(drop.cpn, view.coupon_id))
    assert (c.status, c.owner, c.tpl, c.uses, c.claim) == ("active", "ann", "five", 1,
                                                          r.view.claim_id)
    answer = records.COUPON_ANSWER.decode(await engine.redis.get(
        keys.idempotency_key("d1", "ann", "coupon:k1")))
    assert (answer.code, answer.claim_id, answer.coupons) == (0, r.view.claim_id,
                                                              [view.coupon_id])
    offer = await engine.coupons.offer_gift(view.coupon_id, "ann")
    (token,) = await engine.redis.hkeys(drop.gifts)
    gift = records.GIFT.decode(await engine.redis.hget(drop.gifts, token))
    assert (gift.status, gift.coupon, gift.giver, gift.recipient) == ("open", view.coupon_id,
                                                                      "ann", "")
    assert offer.outcome is Outcome.OK
