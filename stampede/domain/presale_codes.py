"""Presale codes: batches issued by ops, each code signed so that a guessed one fails.

A code is `<batch>-<serial>-<signature>`: the signature is 60 bits of an
HMAC-SHA256 over the campaign, batch and serial under the presale secret, so
nothing but the batch (count, uses, binding, tier) is stored, any code of a
batch can be exported again (CSV), and a guessed or altered code fails here,
before its script. The claim script (include/presale_codes.lua) throttles
every code attempt, checks the batch, the code's uses and its binding, and
spends one use with the hold.
"""

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from typing import cast

from redis.asyncio import Redis

from stampede.domain.models import PresaleBatchView, PresaleCodeBatch, from_ms
from stampede.outcomes import REFUSALS, Outcome
from stampede.state import keys, records
from stampede.state.scripts import ScriptRegistry

_CODE = re.compile(r"^([1-9][0-9]{0,5})-([1-9][0-9]{0,5})-([A-Z2-7]{12})$")
NOT_GENUINE = "?"
"""The code id a claim carries to its script when the code's signature fails."""

CODE_ATTEMPT_LIMITS: dict[str, tuple[str, int, int]] = {
    "presale_code": ("user", 2000, 5),
    "presale_code_device": ("device", 1000, 10),
    "presale_code_network": ("network", 100, 50),
}
"""The code-attempt limiters include/presale_codes.lua keeps (CODE_LIMITS, a test keeps
the two in step): the refusal's scope -> (what it is keyed by, interval ms, burst).
Per user, device (X-Device-Id) and network (the /24 or /64, as the scalper guard sees
it); any one over its limit throttles the attempt."""


def limiter_keys(cid: str, user: str, device: str,
                 network: str) -> tuple[str, str | None, str | None]:
    """A code attempt's limiter keys: the user's always, the device's and the network's
    when the request has them (None otherwise)."""
    return (keys.limiter_key(cid, "code", user),
            keys.limiter_key(cid, "code_device", device) if device else None,
            keys.limiter_key(cid, "code_network", network)
            if network and network != "unknown" else None)


def throttled_message(scope: str, retry_after_ms: int) -> str | None:
    """The refusal of a code attempt over its limiter, naming what it is keyed by and
    the limit; None for a scope that is not a code limiter's."""
    limit = CODE_ATTEMPT_LIMITS.get(scope)
    if limit is None:
        return None
    by, interval, burst = limit
    return REFUSALS["code_throttled"].message({
        "key": by, "limit": burst, "detail": f"{1000 / interval:g}",
        "retry_after_ms": retry_after_ms})


class PresaleCodes:
    def __init__(self, redis: "Redis", scripts: ScriptRegistry,
                 secret: Callable[[], bytes]) -> None:
        self.redis = redis
        self.scripts = scripts
        self._secret_of = secret

    @functools.cached_property
    def _secret(self) -> bytes:
        """Read (or made) only when a code is signed or checked: stats need none."""
        return self._secret_of()

    def code(self, cid: str, batch: int, serial: int) -> str:
        mac = hmac.new(self._secret, f"{cid}|{batch}|{serial}".encode(), hashlib.sha256)
        return f"{batch}-{serial}-{base64.b32encode(mac.digest()).decode()[:12]}"

    def code_id(self, cid: str, code: str) -> str:
        """The id "<batch>.<serial>" of a genuine code of this campaign, else NOT_GENUINE."""
        m = _CODE.match(code.strip().upper())
        if m is None:
            return NOT_GENUINE
        batch, serial = int(m.group(1)), int(m.group(2))
        if not hmac.compare_digest(self.code(cid, batch, serial), m.group(0)):
            return NOT_GENUINE
        return f"{batch}.{serial}"

    async def issue(self, cid: str, spec: PresaleCodeBatch,
                    actor: str) -> tuple[Outcome, str, PresaleBatchView | None]:
        """A new batch: (outcome, refusal reason, the batch)."""
        code, reason, batch, created = await self.scripts.run(
            "presale_codes_issue", [*keys.campaign_keys(cid), *keys.presale_keys(cid)],
            [actor, spec.count, spec.uses, int(spec.bind_to_user), spec.tier])
        if code != Outcome.OK:
            return Outcome(int(code)), str(reason), None
        return Outcome.OK, "", PresaleBatchView(
            batch=int(batch), count=spec.count, tier=spec.tier, uses=spec.uses,
            bind_to_user=spec.bind_to_user, created_at=from_ms(int(created)))

    async def batches(self, cid: str) -> list[PresaleBatchView]:
        """Every batch of the campaign, with its usage."""
        raw = cast(dict[str, str], await self.redis.hgetall(keys.presale_keys(cid).pbatches))
        out = []
        for name, value in raw.items():
            if not name.isdigit():
                continue
            b = records.PRESALE_BATCH.decode(value)
            out.append(PresaleBatchView(
                batch=int(name), count=b.count, tier=b.tier, uses=b.uses,
                bind_to_user=b.bind == 1, created_at=from_ms(b.created),
                codes_used=int(raw.get(f"{name}.codes", 0)),
                claims=int(raw.get(f"{name}.claims", 0))))
        return sorted(out, key=lambda v: v.batch)

    async def batch(self, cid: str, batch: int) -> PresaleBatchView | None:
        return next((b for b in await self.batches(cid) if b.batch == batch), None)

    def csv_lines(self, cid: str, batch: PresaleBatchView) -> Iterator[str]:
        """The batch's codes as CSV, header first (made again from the secret)."""
        yield "code,batch,serial,tier,uses\r\n"
        for serial in range(1, batch.count + 1):
            yield (f"{self.code(cid, batch.batch, serial)},{batch.batch},{serial},"
                   f"{batch.tier},{batch.uses}\r\n")
