"""The script registry: load every Lua operation once, call it by SHA.

Scripts are loaded at start (readiness depends on it) and reloaded when the
server answers NOSCRIPT: its script cache is volatile (restart, SCRIPT FLUSH,
failover).
"""

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from stampede import lua
from stampede.state import luagen

_INCLUDE = re.compile(r"^--@include (\w+)\s*$", re.MULTILINE)

OPERATIONS = (
    "claim_batch",
    "confirm",
    "cancel",
    "sweep",
    "adjust_stock",
    "define_campaign",
    "patch_campaign",
    "read_status",
    "throttle",
    "waitlist_join",
    "waitlist_leave",
    "waitlist_status",
    "queue_ticket",
    "coupon_claim",
    "coupon_redeem",
    "coupon_rollback",
    "coupon_gift_offer",
    "coupon_gift_accept",
    "coupon_expire",
    "coupon_lookup",
    # codes users type
    "coupon_referral_code",
    "coupon_patch",  # coupon rules: live template changes
    "coupon_rules_lookup",  # coupon rules: coupons with their rules and the clock
    # after-sale
    "refund",
    "checkin",
    "transfer_offer",
    "transfer_accept",
    "grant",
    "presale_codes_issue",
    "segment_edit",
    "allocation_return",  # presales: allocations
)


def render(name: str) -> str:
    """The full text of an operation, with its includes pasted in place."""
    return render_text(lua.source_path(name).read_text())


def render_text(text: str, extra: dict[str, Callable[[], str]] | None = None) -> str:
    """`text` with each `--@include NAME` replaced by that fragment, itself expanded:
    a generated one (stampede/state/luagen.py, or `extra`) or lua/include/NAME.lua.
    Each fragment is pasted once, where it is first included."""
    generated = {**luagen.FRAGMENTS, **(extra or {})}
    seen: set[str] = set()

    def paste(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in seen:
            return ""
        seen.add(name)
        body = generated[name]() if name in generated else lua.include_path(name).read_text()
        return _INCLUDE.sub(paste, body)

    return _INCLUDE.sub(paste, text)


class Script:
    def __init__(self, name: str) -> None:
        self.name = name
        self.source = render(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


class ScriptRegistry:
    """Holds every operation's source and SHA; runs them with EVALSHA."""

    def __init__(self, redis: "Redis") -> None:
        self._redis = redis
        self.scripts = {name: Script(name) for name in OPERATIONS}
        self.loaded = False
        self.observer: Callable[[str, float], None] | None = None
        """Called with (script, seconds) after each run: the gateway's metrics hook."""

    async def load_all(self) -> None:
        for script in self.scripts.values():
            sha = await self._redis.script_load(script.source)
            assert sha == script.sha, f"{script.name}: server SHA differs"
        self.loaded = True

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self.observer is None:
            return await self._run(name, keys, args)
        started = time.perf_counter()
        try:
            return await self._run(name, keys, args)
        finally:
            self.observer(name, time.perf_counter() - started)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self.scripts[name]
        try:
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # The cache was flushed: load again and retry once. EVALSHA that
            # answered NOSCRIPT ran nothing, so the retry cannot double-apply.
            await self._redis.script_load(script.source)
            return await self._redis.evalsha(script.sha, len(keys), *keys, *args)
