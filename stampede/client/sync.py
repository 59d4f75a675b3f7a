"""The blocking client: the asyncio one, run on an event loop of its own.

Every method of AsyncClient is here with the same name and arguments, and
blocks until it is done; so both clients retry, key and solve alike. Not for
use inside a running event loop (use AsyncClient there).
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from stampede.client.aio import AsyncClient, OnRetry
from stampede.client.retry import RetryPolicy
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


class Client:
    def __init__(self, base_url: str, *, token: str | None = None,
                 headers: dict[str, str] | None = None, retry: RetryPolicy | None = None,
                 on_retry: OnRetry | None = None, timeout_s: float = 30.0,
                 channel_key: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self.aio = AsyncClient(base_url, token=token, headers=headers, retry=retry,
                               on_retry=on_retry, timeout_s=timeout_s,
                               channel_key=channel_key)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.aio.close())
            self._loop.close()

    def _run(self, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return self._loop.run_until_complete(call(*args, **kwargs))

    @property
    def admission(self) -> dict[str, str]:
        return self.aio.admission

    def intent_key(self, intent: str) -> str:
        return self.aio.intent_key(intent)

    def forget(self, intent: str) -> None:
        self.aio.forget(intent)

    def request(self, method: str, path: str, *, body: Any = None,
                headers: dict[str, str] | None = None, key: str | None = None,
                safe: bool | None = None) -> bytes:
        return self._run(self.aio.request, method, path, body=body, headers=headers, key=key,
                         safe=safe)

    def claim(self, cid: str, sku: str, qty: int = 1, *, intent: str | None = None,
              headers: dict[str, str] | None = None) -> ClaimView:
        return self._run(self.aio.claim, cid, sku, qty, intent=intent, headers=headers)

    def claim_bundle(self, cid: str, *, bundle: str | None = None,
                     lines: Sequence[tuple[str, int]] = (), intent: str | None = None,
                     headers: dict[str, str] | None = None) -> ClaimView:
        return self._run(self.aio.claim_bundle, cid, bundle=bundle, lines=lines,
                         intent=intent, headers=headers)

    def claim_coupon(self, cid: str, sku: str, qty: int = 1, *, intent: str | None = None,
                     headers: dict[str, str] | None = None) -> CouponClaimView:
        return self._run(self.aio.claim_coupon, cid, sku, qty, intent=intent, headers=headers)

    def get_claim(self, claim_id: str) -> ClaimView:
        return self._run(self.aio.get_claim, claim_id)

    def confirm(self, claim_id: str) -> ClaimView:
        return self._run(self.aio.confirm, claim_id)

    def cancel(self, claim_id: str) -> ClaimView:
        return self._run(self.aio.cancel, claim_id)

    def campaign(self, cid: str) -> CampaignPublic:
        return self._run(self.aio.campaign, cid)

    def join_queue(self, cid: str) -> QueueTicket:
        return self._run(self.aio.join_queue, cid)

    def ticket(self, cid: str) -> QueueTicket:
        return self._run(self.aio.ticket, cid)

    def wait_for_admission(self, cid: str, *, min_s: float = 0.5, max_s: float = 5.0,
                           timeout_s: float = 600.0) -> QueueTicket:
        return self._run(self.aio.wait_for_admission, cid, min_s=min_s, max_s=max_s,
                         timeout_s=timeout_s)

    def join_waitlist(self, cid: str, sku: str, qty: int = 1) -> WaitlistEntry:
        return self._run(self.aio.join_waitlist, cid, sku, qty)

    def waitlist(self, cid: str, sku: str | None = None) -> WaitlistView:
        return self._run(self.aio.waitlist, cid, sku)

    def leave_waitlist(self, cid: str, sku: str) -> WaitlistEntry:
        return self._run(self.aio.leave_waitlist, cid, sku)

    def wallet(self, status: str | None = None) -> Wallet:
        return self._run(self.aio.wallet, status)

    def coupon(self, coupon_id: str) -> CouponView:
        return self._run(self.aio.coupon, coupon_id)

    def till_code(self, coupon_id: str) -> RotatingCode:
        return self._run(self.aio.till_code, coupon_id)

    def gift(self, coupon_id: str) -> GiftOffer:
        return self._run(self.aio.gift, coupon_id)

    def accept_gift(self, transfer_token: str) -> CouponView:
        return self._run(self.aio.accept_gift, transfer_token)
