"""Every event a Lua script emits has a typed Struct whose fields are exactly
the names the scripts write (read from their source), and every Struct is emitted."""

import re
from collections import defaultdict

import msgspec

from stampede import lua
from stampede.durable.events import TYPES, Event
from tests.lua.emits import DYNAMIC_TYPES, Emit, emits

HEADER = {f.encode_name for f in msgspec.structs.fields(Event)} | {"type"}


def _by_type() -> dict[str, list[Emit]]:
    found: dict[str, list[Emit]] = defaultdict(list)
    for e in emits():
        for etype in e.types:
            found[etype].append(e)
    return found


def _fields(etype: str) -> tuple[set[str], set[str]]:
    """(every field, required fields) of the Struct for `etype`, header excluded."""
    body = [f for f in msgspec.structs.fields(TYPES[etype]) if f.encode_name not in HEADER]
    return {f.encode_name for f in body}, {f.encode_name for f in body if f.required}


def test_the_reader_finds_every_emit() -> None:
    calls = sum(len(re.findall(r"(?<!function )\bemit\(", p.read_text()))
                for p in lua.LUA_DIR.rglob("*.lua"))
    assert len(emits()) == calls > 20


def test_dynamic_types_are_the_ones_the_scripts_pass() -> None:
    text = " ".join(p.read_text() for p in lua.LUA_DIR.rglob("*.lua"))
    for etype in DYNAMIC_TYPES["etype"]:
        assert f"'{etype}'" in text
    for etype in DYNAMIC_TYPES["'claim_' .. new_status"]:
        assert re.search(rf"release_hold\(.*'{etype.removeprefix('claim_')}'", text)


def test_every_emitted_type_has_a_struct_and_every_struct_is_emitted() -> None:
    assert set(_by_type()) == set(TYPES)


def test_each_struct_has_exactly_the_fields_its_scripts_write() -> None:
    for etype, sites in _by_type().items():
        fields, required = _fields(etype)
        written = set().union(*(s.always | s.sometimes for s in sites))
        assert fields == written, f"{etype}: Struct {sorted(fields)} != written {sorted(written)}"
        for s in sites:  # a required field is written on every path of every script
            assert required <= s.always, f"{etype} in {s.source}: {sorted(required - s.always)}"


def test_no_event_field_shadows_the_header() -> None:
    # emit() writes seq, type, ts and epoch first; a field of the same name would
    # win when the entry is read as a mapping, and the decoder sets the rest.
    for e in emits():
        shadowed = (e.always | e.sometimes) & HEADER
        assert not shadowed, f"{e.source}: {e.types} writes {sorted(shadowed)}"
