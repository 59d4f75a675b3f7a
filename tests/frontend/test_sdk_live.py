"""The SDK's live feed in a real Chromium: server-sent events, and the polling
fallback (GET with If-None-Match: a 304 answers the state it already has)
where EventSource is missing; both see a stock change made by an operator."""

import asyncio
from typing import Any

from tests.frontend.network import offline
from tests.frontend.shop import admin, put_campaign
from tests.system.service import Service

FOLLOW = """async ([cid, transport]) => {
  const { Stampede } = await import('/sdk/v1/stampede.js');
  const shop = new Stampede();
  window.seen = [];
  window.feed = shop.live(cid, (s) => window.seen.push(
    s.skus.find((k) => k.sku === 'tee').available), { transport, pollMs: 300 });
  return window.feed.transport;
}"""


async def test_live_feed_by_events_and_by_polling(page: Any, service: Service) -> None:
    put_campaign(service, "feed", qty=5)
    await offline(page)
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status)
            if r.url.endswith("/v1/campaigns/feed") else None)
    await page.goto(f"{service.url}/docs")
    for transport in ("sse", "poll"):
        assert await page.evaluate(FOLLOW, ["feed", transport]) == transport
        await page.wait_for_function("window.seen.length >= 1")
        before = await page.evaluate("window.seen[window.seen.length - 1]")
        if transport == "poll":  # unchanged: the next polls are answered 304
            for _ in range(50):
                if 304 in statuses:
                    break
                await asyncio.sleep(0.1)
            assert await page.evaluate("window.seen.length") == 1  # a 304 is no new state
        status, body = admin(service, "POST", "/admin/v1/campaigns/feed/skus/tee/stock",
                             {"delta": 2})
        assert status == 200, body
        await page.wait_for_function(f"window.seen.includes({before + 2})", timeout=10_000)
        await page.evaluate("window.feed.close()")
    assert 304 in statuses and statuses.count(200) == 2  # the poll's ETag at work
