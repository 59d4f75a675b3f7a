"""A real points service on loopback for the points-exchange tests (no mock objects).

It keeps balances and debits in memory and honours the protocol of
stampede/durable/points_client.py: one debit per debit id (the same id again
answers the first result), refunds once. `lose_replies` makes it apply the
next debits and then drop the connection without answering, as a reply lost
on the network would be.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from stampede.runtime.ports import free_port


@dataclass
class PointsService:
    balances: dict[str, int] = field(default_factory=dict)
    debits: dict[str, tuple[int, dict[str, Any], str, int]] = field(default_factory=dict)
    """debit id -> (status, answer, user, points)"""
    lose_replies: int = 0
    requests: int = 0
    url: str = ""

    async def debit(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.json()
        did, user, points = body["debit_id"], body["user"], int(body["points"])
        if did not in self.debits:  # first time: apply, once
            if self.balances.get(user, 0) < points:
                self.debits[did] = (409, {"status": "refused", "reason": "insufficient"},
                                    user, points)
            else:
                self.balances[user] -= points
                self.debits[did] = (200, {"status": "debited"}, user, points)
        if self.lose_replies > 0:
            self.lose_replies -= 1
            assert request.transport is not None
            request.transport.close()  # applied, but the reply never leaves
            await asyncio.sleep(0.01)
        status, answer, _, _ = self.debits[did]
        return web.json_response(answer, status=status)

    async def refund(self, request: web.Request) -> web.Response:
        did = request.match_info["debit_id"]
        status, answer, user, points = self.debits.get(did, (404, {}, "", 0))
        if answer.get("status") == "debited":
            self.balances[user] += points
            self.debits[did] = (409, {"status": "refunded"}, user, points)
        elif answer.get("status") != "refunded":
            return web.json_response({"status": "unknown"}, status=404)
        return web.json_response({"status": "refunded"})


@asynccontextmanager
async def points_service() -> AsyncIterator[PointsService]:
    service = PointsService()
    app = web.Application()
    app.router.add_post("/debits", service.debit)
    app.router.add_post("/debits/{debit_id}/refund", service.refund)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    service.url = f"http://127.0.0.1:{port}"
    try:
        yield service
    finally:
        await runner.cleanup()
