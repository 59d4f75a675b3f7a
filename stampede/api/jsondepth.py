"""How deeply a JSON body may nest, checked before it is decoded.

Decoders recurse once per level: a body of a few kilobytes of `[` would hit
Python's recursion limit inside msgspec and answer a 500. Our deepest real
body (a campaign with a throttle's lists, or a coupon drop's templates) nests
6 levels, so MAX_DEPTH leaves plenty of room.
"""

import re

from stampede.errors import ValidationError

MAX_DEPTH = 32
"""Most levels of arrays and objects in a request body (documented in README)."""

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_OPENERS = frozenset(b"[{")


def check_depth(raw: bytes, limit: int = MAX_DEPTH) -> None:
    """Refuse a body that nests more than `limit` levels (ValidationError, a 400)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the common case: cannot be too deep
        return
    depth = 0
    # Brackets inside strings do not nest; an unclosed string leaves its tail
    # counted, which can only over-count a body that is invalid anyway.
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', raw)):
        if match.group()[0] in _OPENERS:
            depth += 1
            if depth > limit:
                raise ValidationError(f"JSON nests deeper than {limit} levels (the limit)")
        else:
            depth -= 1
