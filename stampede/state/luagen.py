"""The Lua side of the key sets, records and arguments, generated from their Python
definitions (keys.py, records.py) and pasted by the script registry like any
`--@include` fragment, so no key order or field layout is written twice.

Fragments:
  keys            `K` (the campaign key set by name) and NKEYS, its length
  coupon_keys     `C` (a drop's coupon keys by name) and NCKEYS
  records         parse_<name>(raw) / format_<name>(t) of the campaign records
  coupon_records  the same for the coupon records
  args            <name>_from(a): a msgpack- or JSON-decoded argument as a table
                  named by the Struct's fields; guard_keys_at(slot) and
                  NGKEYS, how many keys it takes
`TEST_FRAGMENTS` adds <name>_to(t), the way back, for the round-trip tests.
"""

import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from stampede.state import keys, records
from stampede.state.records import TextCodec


def lua_name(struct: type[Any]) -> str:
    """GuardConfig -> guard_config."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", struct.__name__).lower()


def _key_table(var: str, fields: Sequence[str], first: int) -> str:
    items = ", ".join(f"{name} = KEYS[{first + i}]" for i, name in enumerate(fields))
    return f"local {var} = {{{items}}}\n"


def key_set() -> str:
    names = keys.CampaignKeys._fields
    return (f"-- The campaign key set by name (stampede/state/keys.py CampaignKeys).\n"
            f"{_key_table('K', names, 1)}"
            f"local NKEYS = {len(names)}  -- the first extra key is KEYS[NKEYS + 1]\n")


def coupon_key_set() -> str:
    first = len(keys.CampaignKeys._fields) + 1
    names = keys.DropKeys._fields
    return (f"-- A drop's coupon keys by name (stampede/state/keys.py DropKeys).\n"
            f"{_key_table('C', names, first)}"
            f"local NCKEYS = {first + len(names) - 1}\n")


_READ = {"str": "{v}", "int": "tonumber({v})", "opt_int": "tonumber({v})",
         "list": "split_list({v})"}
_WRITE = {"str": "t.{n}", "int": "t.{n}", "opt_int": "(t.{n} or '')",
          "list": "table.concat(t.{n}, '" + records.LIST_SEP + "')",
          "opt_str": "(t.{n} or '')"}


def _pattern(n: int) -> str:
    return "^" + "|".join(["([^|]*)"] * n) + "$"


def text_codec(codec: TextCodec[Any]) -> str:
    n = len(codec.fields)
    vars_ = [f"f{i + 1}" for i in range(n)]
    # A record older than the codec's late fields: matched again without them.
    older = "" if not codec.late else (
        f"  if f1 == nil then {', '.join(vars_[:n - codec.late])} = "
        f"string.match(raw, '{_pattern(n - codec.late)}') end\n")
    reads = ", ".join(f"{name} = {_READ[kind].format(v=v)}"
                      for (name, kind), v in zip(codec.fields, vars_, strict=True))
    # One concatenation: cheaper than building a table for table.concat (a claim
    # batch formats a record per hold).
    # A text field with a default may be left out of the table (nil): written ''.
    writes = f" .. '{records.SEP}' .. ".join(
        _WRITE["opt_str" if kind == "str" and name in codec.defaulted else kind].format(n=name)
        for name, kind in codec.fields)
    return (f"local function parse_{codec.name}(raw)\n"
            f"  local {', '.join(vars_)} = string.match(raw, '{_pattern(n)}')\n"
            f"{older}"
            f"  return {{{reads}}}\n"
            f"end\n"
            f"local function format_{codec.name}(t)\n"
            f"  return {writes}\n"
            f"end\n")


_SPLIT = f"""local function split_list(text)
  local out = {{}}
  for item in string.gmatch(text, '[^{records.LIST_SEP}]+') do out[#out + 1] = item end
  return out
end
"""


_SEP, _PAIR = records.UNITS_SEP, records.UNITS_PAIR
_UNITS = f"""-- A users field (records.py encode_units): "<sku>{_PAIR}<n>{_SEP}...".
-- parse_units returns the total and the units by SKU; format_units skips SKUs at 0
-- ('' when none are left: the caller deletes the field).
local function parse_units(raw)
  local by, total = {{}}, 0
  if raw then
    for sku, n in string.gmatch(raw, '([^{_SEP}{_PAIR}]+){_PAIR}(%-?%d+)') do
      n = tonumber(n)
      by[sku], total = n, total + n
    end
  end
  return total, by
end
local function format_units(by)
  local parts = {{}}
  for sku, n in pairs(by) do
    if n ~= 0 then parts[#parts + 1] = sku .. '{_PAIR}' .. n end
  end
  return table.concat(parts, '{_SEP}')
end
"""


def record_codecs(codecs: Sequence[TextCodec[Any]], helpers: bool) -> str:
    head = ("-- Stored records (stampede/state/records.py): '|'-joined text, parsed into\n"
            "-- tables named by the record's fields and formatted back.\n")
    return (head + (_SPLIT + _UNITS if helpers else "")
            + "".join(text_codec(c) for c in codecs))


def _wire(struct: type[msgspec.Struct]) -> list[tuple[str, str, Any]]:
    """(field name, wire accessor, type) of each field: a[i] or a.<encoded name>."""
    array = struct.__struct_config__.array_like
    return [(f.name, f"[{i + 1}]" if array else f".{f.encode_name}", f.type)
            for i, f in enumerate(msgspec.structs.fields(struct))]


def _from(struct: type[msgspec.Struct]) -> str:
    parts = []
    for name, at, tp in _wire(struct):
        how, inner = records.nested(tp)
        v = f"a{at}"
        if inner is not None:
            conv = f"{lua_name(inner)}_from"
            v = {"one": f"{conv}({v})", "optional": f"{v} and {conv}({v})",
                 "list": f"list_of({v} or {{}}, {conv})"}[how]
        parts.append(f"{name} = {v}")
    return (f"local function {lua_name(struct)}_from(a)\n"
            f"  return {{{', '.join(parts)}}}\n"
            f"end\n")


def _to(struct: type[msgspec.Struct]) -> str:
    array = struct.__struct_config__.array_like
    parts = []
    for name, at, tp in _wire(struct):
        how, inner = records.nested(tp)
        v = f"t.{name}"
        if inner is not None:  # an empty list is left out: cjson would write {} for it
            conv = f"{lua_name(inner)}_to"
            v = {"one": f"{conv}({v})", "optional": f"{v} and {conv}({v})",
                 "list": f"(#{v} > 0 and list_of({v}, {conv}) or nil)"}[how]
        parts.append(v if array else f"{at[1:]} = {v}")
    return (f"local function {lua_name(struct)}_to(t)\n"
            f"  return {{{', '.join(parts)}}}\n"
            f"end\n")


_LIST_OF = """local function list_of(xs, conv)
  local out = {}
  for i, x in ipairs(xs) do out[i] = conv(x) end
  return out
end
"""


def _guard_keys() -> str:
    items = ", ".join(f"{name} = KEYS[slot + {i}]" for i, name in enumerate(keys.GuardKeys._fields))
    return (f"local function guard_keys_at(slot)\n"
            f"  return {{{items}}}\n"
            f"end\n"
            f"local NGKEYS = {len(keys.GuardKeys._fields)}  -- how many guard_keys_at takes\n")


def _presale_keys() -> str:
    items = ", ".join(f"{name} = KEYS[slot + {i}]"
                      for i, name in enumerate(keys.PresaleKeys._fields))
    return (f"local function presale_keys_at(slot)\n"
            f"  return {{{items}}}\n"
            f"end\n")


def _structs(conv: Callable[[type[msgspec.Struct]], str]) -> str:
    return "".join(conv(s) for s in records.ARG_STRUCTS)


def args() -> str:
    return ("-- Structured arguments (stampede/state/records.py), decoded by cmsgpack or\n"
            "-- cjson, as tables named by their fields.\n"
            + _LIST_OF + _structs(_from) + _guard_keys() + _presale_keys())


FRAGMENTS: dict[str, Callable[[], str]] = {
    "keys": key_set,
    "coupon_keys": coupon_key_set,
    "records": lambda: record_codecs(records.CAMPAIGN_RECORDS, helpers=True),
    "coupon_records": lambda: record_codecs(records.COUPON_RECORDS, helpers=False),
    "args": args,
    "refund_records": lambda: record_codecs(records.REFUND_RECORDS, helpers=False),
    "bundle_records": lambda: (record_codecs((records.BUNDLE_LINE,), helpers=False)
                               + f"local BUNDLE_ITEMS_SEP = '{records.BUNDLE_ITEMS_SEP}'\n"),
}

TEST_FRAGMENTS: dict[str, Callable[[], str]] = {
    "args_to": lambda: _structs(_to),
}
