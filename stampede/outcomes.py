"""The small codes every Lua script answers with; one enum names them.

The values mirror the constants at the top of `stampede/lua/include/common.lua`
(a test keeps the two in step). The gateway maps each to an HTTP status in
one table (`stampede.api.errors`).
"""

from enum import IntEnum


class Outcome(IntEnum):
    OK = 0
    SOLD_OUT = 1
    LIMIT_EXCEEDED = 2
    NOT_OPEN = 3
    PAUSED = 4
    CLOSED = 5
    NOT_FOUND = 6
    HOLD_EXPIRED = 7
    CONFLICT = 8
    IDEMPOTENCY_MISMATCH = 9
    INVALID = 10
    FENCED = 11
    ADMISSION_REQUIRED = 12
    WAITLIST_FULL = 13
    NOT_SOLD_OUT = 14
    THROTTLED = 15
    BLOCKED = 16
    CHALLENGE_REQUIRED = 17

    @property
    def code(self) -> str:
        """The stable error code clients see (listed in README.md, API)."""
        return _CODES[self]


_CODES = {
    Outcome.OK: "ok",
    Outcome.SOLD_OUT: "sold_out",
    Outcome.LIMIT_EXCEEDED: "limit_exceeded",
    Outcome.NOT_OPEN: "not_open",
    Outcome.PAUSED: "paused",
    Outcome.CLOSED: "closed",
    Outcome.NOT_FOUND: "not_found",
    Outcome.HOLD_EXPIRED: "hold_expired",
    Outcome.CONFLICT: "conflict",
    Outcome.IDEMPOTENCY_MISMATCH: "idempotency_mismatch",
    Outcome.INVALID: "invalid_request",
    Outcome.FENCED: "unavailable",
    Outcome.ADMISSION_REQUIRED: "admission_required",
    Outcome.WAITLIST_FULL: "conflict",
    Outcome.NOT_SOLD_OUT: "conflict",
    Outcome.THROTTLED: "throttled",
    Outcome.BLOCKED: "blocked",
    Outcome.CHALLENGE_REQUIRED: "challenge_required",
}


GUARD_REFUSALS = frozenset({Outcome.THROTTLED, Outcome.BLOCKED, Outcome.CHALLENGE_REQUIRED})
"""The scalper guard's refusals: they carry a reason (and a retry-after or a challenge)."""

OUTCOMES: tuple[Outcome, ...] = tuple(sorted(Outcome, key=int))
"""Outcome by code, for the hot path (indexing a tuple beats the enum call)."""
assert all(o.value == i for i, o in enumerate(OUTCOMES)), "outcome codes must be 0..n-1"
