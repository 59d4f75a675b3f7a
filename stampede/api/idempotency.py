"""Idempotency-Key semantics at the edge: in-flight retries and replayed answers.

- A retry while the first request with the same key is still being served
  by this process answers 409 `conflict`.
- Claims: the claim script itself stores the key and its first answer, so a
  retry anywhere (another worker, after a lost reply) cannot claim twice.
- Confirm and cancel: the first answer is kept in `ResponseMemory`; a retry
  gets it back, the same key on another request gets 422.
- A request answered from that memory is marked `REPLAYED` (as is one whose
  script answered a retry with its first answer: an operator refund, a grant
  that granted nobody anew): it changed nothing, so the admin audit log
  (api/audit.py) records no second action.
"""

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from stampede.api.errors import ApiError, refuse
from stampede.api.headers import header
from stampede.state import keys
from stampede.state.idempotency import ResponseMemory

KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
REPLAYED = web.RequestKey("replayed", bool)
"""Set on a request whose answer is a retry's: the first one's, nothing done again."""


def checked_key(request: web.Request) -> str | None:
    key = header(request, "Idempotency-Key")
    if key is not None and not _KEY.match(key):
        raise ApiError.of("invalid", detail="Idempotency-Key must be 1 to 255 visible "
                                               "ASCII characters")
    return key


class IdempotencyGuard:
    def __init__(self, memory: ResponseMemory) -> None:
        self._memory = memory
        self._in_flight: set[tuple[str, str]] = set()

    @asynccontextmanager
    async def in_flight(self, user: str, key: str | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        if (user, key) in self._in_flight:
            raise ApiError.of("in_flight", key=key)
        self._in_flight.add((user, key))
        try:
            yield
        finally:
            self._in_flight.discard((user, key))

    async def replayable(self, request: web.Request, user: str, fingerprint: str,
                         run: Callable[[], Awaitable[web.Response]],
                         cid: str | None = None) -> web.Response:
        """Run `run` once per (user, key); a retry gets the first answer back.

        The answer is kept under the campaign `cid`, by default the one of
        the route's claim id."""
        key = checked_key(request)
        cid = cid or keys.campaign_of_claim(request.match_info.get("claim_id", ""))
        if key is None or cid is None:
            return await run()
        async with self.in_flight(user, key):
            first = await self._memory.recall(cid, user, key)
            if first is not None:
                if first[0] != fingerprint:
                    return refuse("idempotency_mismatch", {"key": key})
                request[REPLAYED] = True
                return web.Response(status=first[1], body=first[2],
                                    content_type="application/json")
            response = await run()
            # Not a 404 either: the claim may exist once its campaign is healed
            # (api.healing), and a retry must then see it.
            if response.status < 500 and response.status != 404 \
                    and isinstance(response.body, bytes):
                await self._memory.remember(cid, user, key, fingerprint, response.status,
                                            response.body)
            return response
