"""A Python client of the public API, for services and load tests: asyncio and sync.

    async with AsyncClient("http://shop:8000", token=jwt) as shop:
        await shop.wait_for_admission("spring-drop")
        hold = await shop.claim("spring-drop", "tee-black")
        await shop.confirm(hold.claim_id)

    with Client("http://shop:8000", headers={"X-User-Id": "alice"}) as shop:  # dev auth
        coupons = shop.claim_coupon("five-off", "five").coupons

It behaves as the browser SDK does (/sdk/v1/stampede.js): one Idempotency-Key
per intent, kept across retries; retries on network errors, 429, 503 and a
409 "still in flight", honouring Retry-After with jitter and a cap; a
proof-of-work challenge solved (in a thread) and the claim sent again; the
waiting room's admission token carried to the claim; refusals raised as
StampedeError with the stable code. Answers are the service's own msgspec
types. Nothing in the service imports this package.
"""

from stampede.client.aio import AsyncClient
from stampede.client.errors import StampedeError
from stampede.client.retry import RetryPolicy
from stampede.client.sync import Client

__all__ = ["AsyncClient", "Client", "RetryPolicy", "StampedeError"]
