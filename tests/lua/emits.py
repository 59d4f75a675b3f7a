"""What the Lua scripts emit, read from their source: each `emit(now, type, fields)` call
with the field names it writes (always, or only on some paths)."""

import re
from dataclasses import dataclass
from pathlib import Path

from stampede import lua

# Calls whose type is not a literal: the types each can take. A new one fails
# test_every_emit_is_read until it is listed here.
DYNAMIC_TYPES = {
    "etype": ("offer_accepted", "offer_lapsed", "offer_declined"),  # settle_offer()
    "'claim_' .. new_status": ("claim_expired", "claim_cancelled"),  # release_hold()
}


@dataclass(frozen=True)
class Emit:
    source: str
    types: tuple[str, ...]
    always: frozenset[str]
    sometimes: frozenset[str]


def sources() -> list[Path]:
    return sorted(lua.LUA_DIR.glob("*.lua")) + sorted((lua.LUA_DIR / "include").glob("*.lua"))


def _split_args(text: str, start: int) -> tuple[list[str], int]:
    """The top-level comma-separated arguments of the call whose '(' is at `start`."""
    depth, quote, args, current = 0, "", [], ""
    i = start + 1
    while True:
        ch = text[i]
        if quote:
            quote = "" if ch == quote and text[i - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            if depth == 0:
                args.append(current.strip())
                return args, i
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            i += 1
            continue
        current += ch
        i += 1


def _names(table: str) -> list[str]:
    """The names of a flat {name, value, name, value, ...} table literal."""
    items, _ = _split_args("(" + table.strip()[1:-1] + ")", 0)
    items = [i for i in items if i]
    names = items[0::2]
    assert all(re.fullmatch(r"'\w+'", n) for n in names), f"field names not literal: {names}"
    return [n.strip("'") for n in names]


def _table(text: str, arg: str) -> tuple[set[str], set[str]]:
    if arg.startswith("{"):
        return set(_names(arg)), set()
    # A local table built before the call: its literal, then optional appends.
    m = re.search(rf"local {arg} = \{{", text)
    assert m, f"cannot find the fields table {arg!r}"
    _, end = _split_args(text, m.end() - 1)
    always = set(_names(text[m.end() - 1:end + 1]))
    sometimes = set(re.findall(rf"{arg}\[#{arg} \+ 1\] = '(\w+)'", text))
    return always, sometimes


def emits() -> list[Emit]:
    found = []
    for path in sources():
        text = path.read_text()
        for m in re.finditer(r"(?<!function )\bemit\(", text):
            args, _ = _split_args(text, m.end() - 1)
            assert len(args) == 3, f"{path.name}: emit with {len(args)} arguments"
            etype, table = args[1], args[2]
            literal = re.fullmatch(r"'(\w+)'", etype)
            types = (literal.group(1),) if literal else DYNAMIC_TYPES.get(etype)
            assert types, f"{path.name}: emit of an unlisted dynamic type {etype!r}"
            always, sometimes = _table(text, table)
            found.append(Emit(path.name, types, frozenset(always), frozenset(sometimes)))
    return found
