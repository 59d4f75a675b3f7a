"""The asyncio client (aiohttp)."""

import asyncio
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
import orjson

from stampede.client.errors import StampedeError
from stampede.client.retry import RetryPolicy
from stampede.domain import pow
from stampede.domain.coupons.spec import (
    CouponClaimView,
    CouponView,
    GiftOffer,
    RotatingCode,
    Wallet,
)
from stampede.domain.models import (
    CampaignPublic,
    ClaimView,
    QueueTicket,
    WaitlistEntry,
    WaitlistView,
)

T = TypeVar("T")
OnRetry = Callable[[int, float, StampedeError], None]
"""Called before each retry with the attempt that failed, the wait (s) and the error."""


def _p(part: str) -> str:
    return quote(part, safe="")


class AsyncClient:
    def __init__(self, base_url: str, *, token: str | None = None,
                 headers: dict[str, str] | None = None, retry: RetryPolicy | None = None,
                 on_retry: OnRetry | None = None, timeout_s: float = 30.0,
                 session: aiohttp.ClientSession | None = None,
                 channel_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.channel_key = channel_key
        """A channel API key (a partner's, a box office's): sent as X-Channel-Key with
        each sale claim (claim, claim_bundle) only, so it takes from that channel's
        allocations; the user is still the one of the token or headers."""
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.admission: dict[str, str] = {}
        """Campaign -> the admission token of my waiting-room ticket."""
        self._keys: dict[str, str] = {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    # -- the core: one call, retried ----------------------------------------------------

    async def request(self, method: str, path: str, *, body: Any = None,
                      headers: dict[str, str] | None = None, key: str | None = None,
                      safe: bool | None = None) -> bytes:
        """The answer's body, after retries; raises StampedeError. `key` goes out as
        Idempotency-Key on every try; without one only reads (or `safe` calls) repeat."""
        again = safe if safe is not None else (method == "GET" or key is not None)
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return await self._once(method, path, body, headers, key)
            except StampedeError as error:
                wait = self.retry.delay(attempt, error, again)
                if wait is None:
                    raise
                if self.on_retry is not None:
                    self.on_retry(attempt, wait, error)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable: the last attempt raises")

    async def _once(self, method: str, path: str, body: Any, headers: dict[str, str] | None,
                    key: str | None) -> bytes:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        sent = {**self.headers, **(headers or {})}
        data = None
        if body is not None:
            sent["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        if key is not None:
            sent["Idempotency-Key"] = key
        try:
            async with self._session.request(method, self.base_url + path, data=data,
                                             headers=sent) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise StampedeError.of(resp.status, raw, resp.headers)
                return raw
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise StampedeError.network(exc) from exc

    async def _get(self, path: str, kind: type[T]) -> T:
        return msgspec.json.decode(await self.request("GET", path), type=kind)

    def intent_key(self, intent: str) -> str:
        """The Idempotency-Key of an intent: the same until `forget(intent)`."""
        return self._keys.setdefault(intent, str(uuid.uuid4()))

    def forget(self, intent: str) -> None:
        self._keys.pop(intent, None)

    # -- claims ------------------------------------------------------------------------

    async def claim(self, cid: str, sku: str, qty: int = 1, *, intent: str | None = None,
                    headers: dict[str, str] | None = None) -> ClaimView:
        """A hold. The same (campaign, sku, qty) intent reuses its key: one hold."""
        raw = await self._guarded(f"/v1/campaigns/{_p(cid)}/claims", cid,
                                  {"sku": sku, "qty": qty},
                                  intent or f"claim:{cid}:{sku}:{qty}", self._sale(headers))
        return msgspec.json.decode(raw, type=ClaimView)

    def _sale(self, headers: dict[str, str] | None) -> dict[str, str] | None:
        """A sale claim's extra headers: the channel key, if the client has one."""
        if self.channel_key is None:
            return headers
        return {"X-Channel-Key": self.channel_key, **(headers or {})}

    async def claim_bundle(self, cid: str, *, bundle: str | None = None,
                           lines: Sequence[tuple[str, int]] = (), intent: str | None = None,
                           headers: dict[str, str] | None = None) -> ClaimView:
        """A hold of several SKUs at once, all or nothing: the campaign's `bundle` by
        name, or `lines` of (sku, qty). The answer lists each line."""
        body: dict[str, Any] = {"bundle": bundle} if bundle is not None else \
            {"lines": [{"sku": sku, "qty": qty} for sku, qty in lines]}
        what = f"bundle:{bundle}" if bundle is not None else \
            "lines:" + ",".join(f"{sku}:{qty}" for sku, qty in lines)
        raw = await self._guarded(f"/v1/campaigns/{_p(cid)}/claims", cid, body,
                                  intent or f"claim:{cid}:{what}", self._sale(headers))
        return msgspec.json.decode(raw, type=ClaimView)

    async def claim_coupon(self, cid: str, sku: str, qty: int = 1, *,
                           intent: str | None = None,
                           headers: dict[str, str] | None = None) -> CouponClaimView:
        raw = await self._guarded(f"/v1/campaigns/{_p(cid)}/coupons", cid,
                                  {"sku": sku, "qty": qty},
                                  intent or f"coupon:{cid}:{sku}:{qty}", headers)
        return msgspec.json.decode(raw, type=CouponClaimView)

    async def _guarded(self, path: str, cid: str, body: dict[str, Any], intent: str,
                       extra: dict[str, str] | None) -> bytes:
        key = self.intent_key(intent)
        headers = dict(extra or {})
        if cid in self.admission:
            headers["X-Admission-Token"] = self.admission[cid]
        for solved in range(3):
            try:
                return await self.request("POST", path, body=body, headers=headers, key=key)
            except StampedeError as err:
                challenge = err.details.get("challenge")
                if err.code != "challenge_required" or not isinstance(challenge, dict) \
                        or solved == 2:
                    raise
                token, bits = str(challenge["token"]), int(challenge["difficulty"])
                headers["X-Challenge-Token"] = token
                headers["X-Challenge-Solution"] = await asyncio.to_thread(pow.solve, token, bits)
        raise AssertionError("unreachable: the third refusal raises")

    async def get_claim(self, claim_id: str) -> ClaimView:
        return await self._get(f"/v1/claims/{_p(claim_id)}", ClaimView)

    async def confirm(self, claim_id: str) -> ClaimView:
        raw = await self.request("POST", f"/v1/claims/{_p(claim_id)}/confirm",
                                 key=self.intent_key(f"confirm:{claim_id}"))
        return msgspec.json.decode(raw, type=ClaimView)

    async def cancel(self, claim_id: str) -> ClaimView:
        raw = await self.request("POST", f"/v1/claims/{_p(claim_id)}/cancel",
                                 key=self.intent_key(f"cancel:{claim_id}"))
        return msgspec.json.decode(raw, type=ClaimView)

    # -- the campaign, the waiting room and the waitlist --------------------------------

    async def campaign(self, cid: str) -> CampaignPublic:
        return await self._get(f"/v1/campaigns/{_p(cid)}", CampaignPublic)

    async def join_queue(self, cid: str) -> QueueTicket:
        raw = await self.request("POST", f"/v1/campaigns/{_p(cid)}/queue", safe=True)
        return self._keep_admission(cid, msgspec.json.decode(raw, type=QueueTicket))

    async def ticket(self, cid: str) -> QueueTicket:
        return self._keep_admission(
            cid, await self._get(f"/v1/campaigns/{_p(cid)}/queue/me", QueueTicket))

    def _keep_admission(self, cid: str, ticket: QueueTicket) -> QueueTicket:
        if ticket.admission_token:
            self.admission[cid] = ticket.admission_token
        return ticket

    async def wait_for_admission(self, cid: str, *, min_s: float = 0.5, max_s: float = 5.0,
                                 timeout_s: float = 600.0) -> QueueTicket:
        """Take a ticket and poll it until admitted (claims then carry its token)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        ticket = await self.join_queue(cid)
        while ticket.status != "admitted":
            if ticket.status == "done" or loop.time() > deadline:
                raise StampedeError(409, "ticket_done" if ticket.status == "done" else "timeout",
                                    f"not admitted to campaign '{cid}' ({ticket.status})")
            eta = ticket.estimated_wait_s
            await asyncio.sleep(max_s if eta is None else min(max_s, max(min_s, eta / 2)))
            ticket = await self.ticket(cid)
        return ticket

    async def join_waitlist(self, cid: str, sku: str, qty: int = 1) -> WaitlistEntry:
        headers = {"X-Admission-Token": self.admission[cid]} if cid in self.admission else {}
        raw = await self.request("POST", f"/v1/campaigns/{_p(cid)}/waitlist",
                                 body={"sku": sku, "qty": qty}, headers=headers, safe=True)
        return msgspec.json.decode(raw, type=WaitlistEntry)

    async def waitlist(self, cid: str, sku: str | None = None) -> WaitlistView:
        query = f"?sku={_p(sku)}" if sku else ""
        return await self._get(f"/v1/campaigns/{_p(cid)}/waitlist{query}", WaitlistView)

    async def leave_waitlist(self, cid: str, sku: str) -> WaitlistEntry:
        raw = await self.request("DELETE", f"/v1/campaigns/{_p(cid)}/waitlist?sku={_p(sku)}",
                                 safe=True)
        return msgspec.json.decode(raw, type=WaitlistEntry)

    # -- coupons -----------------------------------------------------------------------

    async def wallet(self, status: str | None = None) -> Wallet:
        query = f"?status={_p(status)}" if status else ""
        return await self._get(f"/v1/me/coupons{query}", Wallet)

    async def coupon(self, coupon_id: str) -> CouponView:
        return await self._get(f"/v1/coupons/{_p(coupon_id)}", CouponView)

    async def till_code(self, coupon_id: str) -> RotatingCode:
        return await self._get(f"/v1/coupons/{_p(coupon_id)}/code", RotatingCode)

    async def gift(self, coupon_id: str) -> GiftOffer:
        raw = await self.request("POST", f"/v1/coupons/{_p(coupon_id)}/gift",
                                 key=self.intent_key(f"gift:{coupon_id}"))
        return msgspec.json.decode(raw, type=GiftOffer)

    async def accept_gift(self, transfer_token: str) -> CouponView:
        raw = await self.request("POST", "/v1/gifts/accept",
                                 body={"transfer_token": transfer_token},
                                 key=self.intent_key(f"accept:{transfer_token}"))
        return msgspec.json.decode(raw, type=CouponView)
