"""The points service over HTTP: idempotent debits and refunds (docs/points.md).

    POST {url}/debits                    {"debit_id", "user", "points", "campaign_id", "sku"}
         200 {"status": "debited"}       (again for the same debit_id: the same answer)
         409 {"status": "refused", "reason"}  or  {"status": "refunded"}
    POST {url}/debits/{debit_id}/refund  200 {"status": "refunded"} (idempotent)

A lost reply, a timeout or a 5xx is retried with the same debit id (the
service debits once per id), a few times; then the debit is 'unavailable'
and the claim answers 503 (the client retries the claim with the same
Idempotency-Key: the same debit id again).
"""

import asyncio
import logging
from typing import Any

import aiohttp
import msgspec

from stampede.domain.coupons.points import Debit

log = logging.getLogger(__name__)
_ATTEMPTS = 3
_reply = msgspec.json.Decoder(dict[str, Any])


class HttpPoints:
    def __init__(self, url: str, timeout_s: float, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(3.0, timeout_s))
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """(status, JSON body) of the first attempt answered below 500; None if none was."""
        for attempt in range(_ATTEMPTS):
            try:
                async with self._client().post(self.url + path, json=body) as r:
                    raw = await r.read()
                    if r.status < 500:
                        return r.status, _reply.decode(raw) if raw else {}
            except (TimeoutError, aiohttp.ClientError, msgspec.DecodeError) as exc:
                log.warning("points service %s, attempt %d: %r", path, attempt + 1, exc)
            await asyncio.sleep(0.05 * 2 ** attempt)
        return None

    async def debit(self, debit_id: str, user: str, points: int, campaign_id: str,
                    sku: str) -> Debit:
        answer = await self._post("/debits", {"debit_id": debit_id, "user": user,
                                              "points": points, "campaign_id": campaign_id,
                                              "sku": sku})
        if answer is None:
            return Debit("unavailable")
        status, body = answer
        if status == 200 and body.get("status") == "debited":
            return Debit("debited")
        if body.get("status") == "refunded":
            return Debit("refunded")
        return Debit("refused", str(body.get("reason", f"status {status}")))

    async def refund(self, debit_id: str) -> Debit:
        answer = await self._post(f"/debits/{debit_id}/refund", {})
        if answer is None or answer[1].get("status") != "refunded":
            log.error("points debit %s not refunded: %r", debit_id, answer)
            return Debit("unavailable")
        return Debit("refunded")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
