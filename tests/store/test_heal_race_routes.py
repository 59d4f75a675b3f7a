"""The waitlist, waiting-room, status, after-sale and paid-voucher routes while a
campaign heals.

The claim routes' race (tests/store/test_heal_race.py) on the other routes: the
campaign's keys are flushed (all but its event stream), a request runs its
script against the flushed campaign, and the heal rebuilds the campaign before
the healing middleware looks. Each route must answer "retry" (503 unavailable,
Retry-After; a scan's verdict `fenced`), never a final 404 or "no such
ticket", and the same request again must then succeed. A fenced campaign
(being rebuilt) takes no waiting-room ticket: nothing is written before the
rebuild. Real Valkey, real SQLite and PostgreSQL; nothing mocked.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from stampede import Engine, Outcome
from stampede.api.errors import Handler
from stampede.domain.tickets import ScannerSpec
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.recovery import fence, heal, recover_campaign
from stampede.durable.store import Store
from stampede.state import keys
from tests.aftersale.helpers import bought, sale_spec
from tests.conftest import campaign_spec, serving
from tests.coupons.test_paid import paid_spec
from tests.store.helpers import healing_public_app

TTL_MS = 86_400_000
Client = TestClient[web.Request, web.Application]


class HealInTheGap:
    """Rebuild the flushed campaign right after the handler answered, before the
    healing middleware sees the answer."""

    def __init__(self, redis: "Redis[str]", store: Store) -> None:
        self.redis, self.store = redis, store
        self.armed: str | None = None
        self.heals = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if self.armed is not None:
            cid, self.armed = self.armed, None
            await recover_campaign(self.redis, self.store, cid, TTL_MS)
            self.heals += 1
        return response

    async def flush(self, cid: str) -> None:
        """Every key of the campaign (its hash tag) but its event stream."""
        lost = [k async for k in self.redis.scan_iter(match=f"{{c:{cid}}}:*")
                if k != keys.events_key(cid)]
        await self.redis.delete(*lost)
        self.armed = cid


@pytest.fixture
async def client(sale: Engine, raw_redis: "Redis[str]", store: Store
                 ) -> AsyncIterator[tuple[Client, HealInTheGap]]:
    gap = HealInTheGap(raw_redis, store)
    async with serving(healing_public_app(sale, store, gap.middleware)) as http:
        yield http, gap


def _as(user: str) -> dict[str, str]:
    return {"X-User-Id": user}


async def test_every_route_answers_retry_while_its_campaign_heals(
        sale: Engine, persister: Persister, client: tuple[Client, HealInTheGap]) -> None:
    http, gap = client
    await sale.define_campaign("c1", sale_spec(stock=3, per_user=3, buyer_window_s=3600,
                                               tickets={"venue": "arena"},
                                               transfers={}, waitlist={}))
    refunded, given, scanned = [await bought(sale, "c1", "ann") for _ in range(3)]  # sold out
    joined = await http.post("/v1/campaigns/c1/waitlist", json={"sku": "tee"}, headers=_as("bob"))
    assert joined.status == 201
    token = (await (await http.post(f"/v1/claims/{given}/transfer", headers=_as("ann"))
                    ).json())["transfer_token"]
    door = await sale.tickets.put_scanner("north-1", ScannerSpec(venue="arena", gate="north"))
    code = {t.ticket_id: t.code for t in await sale.tickets.mine("c1", "ann")}[f"{scanned}-1"]
    await sale.define_campaign("room", campaign_spec(
        waiting_room={"rate_per_s": 1000, "burst": 100, "max_active": 100}))
    took = await http.post("/v1/campaigns/room/queue", headers=_as("fay"))
    assert took.status == 201
    await sale.define_campaign("cafe", paid_spec(stock=10))
    held, kept = [(await sale.coupons.claim("cafe", "gus", "coffee10")).view.claim_id
                  for _ in range(2)]
    assert (await sale.coupons.paid.confirm(kept, "gus", "pay-1")).outcome is Outcome.OK

    scanner = {"Authorization": f"Bearer {door.token}"}
    asks: list[tuple[str, str, str, dict[str, Any] | None, dict[str, str], int]] = [
        ("c1", "GET", "/v1/campaigns/c1", None, {}, 200),
        ("c1", "POST", "/v1/campaigns/c1/waitlist", {"sku": "tee"}, _as("cat"), 201),
        ("c1", "GET", "/v1/campaigns/c1/waitlist", None, _as("bob"), 200),
        ("c1", "DELETE", "/v1/campaigns/c1/waitlist?sku=tee", None, _as("bob"), 200),
        ("c1", "GET", "/v1/me/tickets?campaign=c1", None, _as("ann"), 200),
        ("c1", "POST", f"/v1/claims/{given}/transfer", None, _as("ann"), 201),
        ("c1", "POST", "/v1/transfers/accept", {"transfer_token": token}, _as("dan"), 200),
        ("c1", "POST", f"/v1/claims/{refunded}/refund", {},
         {**_as("ann"), "Idempotency-Key": "refund-1"}, 200),
        ("cafe", "GET", f"/v1/paid-holds/{held}", None, _as("gus"), 200),
        ("cafe", "POST", f"/v1/paid-holds/{held}/confirm", {"payment": "pay-2"},
         {**_as("gus"), "Idempotency-Key": "pay-2"}, 200),
        ("cafe", "POST", f"/v1/paid-holds/{kept}/refund", None,
         {**_as("gus"), "Idempotency-Key": "refund-2"}, 200),
        ("room", "POST", "/v1/campaigns/room/queue", None, _as("eve"), 201),
        # Waiting-room tickets are events: the rebuilt room still has fay's ticket.
        ("room", "GET", "/v1/campaigns/room/queue/me", None, _as("fay"), 200),
    ]
    for cid, method, path, body, headers, done in asks:
        await persister.drain()
        await gap.flush(cid)
        first = await http.request(method, path, json=body, headers=headers)
        assert gap.armed is None, "the heal ran in the gap"
        assert first.status == 503, (path, first.status, await first.text())
        assert (await first.json())["error"]["code"] == "unavailable"
        assert first.headers["Retry-After"]
        again = await http.request(method, path, json=body, headers=headers)
        assert again.status == done, (path, again.status, await again.text())

    await persister.drain()
    await gap.flush("c1")
    scan = await http.post("/v1/checkins", json={"code": code}, headers=scanner)
    assert scan.status == 200 and (await scan.json())["verdict"] == "fenced"
    scan = await http.post("/v1/checkins", json={"code": code}, headers=scanner)
    assert (await scan.json())["verdict"] == "admitted"
    assert gap.heals == len(asks) + 1


async def test_a_campaign_never_defined_is_still_404(
        sale: Engine, client: tuple[Client, HealInTheGap]) -> None:
    http, gap = client
    for method, path in (("GET", "/v1/campaigns/nope"), ("GET", "/v1/campaigns/nope/waitlist"),
                         ("POST", "/v1/campaigns/nope/queue"),
                         ("GET", "/v1/me/tickets?campaign=nope"),
                         ("POST", "/v1/claims/nope.0123456789abcdef0123/transfer")):
        r = await http.request(method, path, headers=_as("bob"))
        assert r.status == 404, (path, r.status)
        assert (await r.json())["error"]["code"] == "not_found"
    accept = await http.post("/v1/transfers/accept", headers=_as("bob"),
                             json={"transfer_token": "nope." + "ab" * 16})
    assert accept.status == 404
    assert gap.heals == 0


async def test_a_fenced_campaign_takes_no_ticket_before_its_rebuild(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        client: tuple[Client, HealInTheGap]) -> None:
    http, _gap = client
    await sale.define_campaign("room", campaign_spec(
        waiting_room={"rate_per_s": 1000, "burst": 100, "max_active": 100}))
    await persister.drain()
    ks = keys.campaign_keys("room")
    await raw_redis.delete(*[k for k in ks if k != keys.events_key("room")])
    await fence(raw_redis, store, "room")  # the heal's first step: meta back, fenced
    for method, path in (("POST", "/v1/campaigns/room/queue"),
                         ("POST", "/v1/campaigns/room/waitlist"),
                         ("GET", "/v1/campaigns/room")):
        r = await http.request(method, path, headers=_as("eve"),
                               json={"sku": "tee"} if path.endswith("waitlist") else None)
        assert r.status == 503, (path, r.status, await r.text())
    assert not await raw_redis.exists(ks.queue, ks.wlentries)
    assert await raw_redis.hget(ks.meta, "wr_seq") is None


async def test_traffic_through_repeated_flushes_and_heals_sees_no_wrong_404(
        sale: Engine, persister: Persister, raw_redis: "Redis[str]", store: Store,
        client: tuple[Client, HealInTheGap]) -> None:
    """Readers and waitlist joiners run while the campaign is flushed and healed
    (the heal job's `heal`, which stores the stream's events first) over and over:
    every answer is the right one or 503, and every join answered 201 is kept."""
    http, _gap = client
    await sale.define_campaign("c1", sale_spec(stock=1, per_user=1, tickets={"venue": "arena"},
                                               waitlist={}))
    await bought(sale, "c1", "ann")  # sold out: joiners queue
    await persister.drain()
    statuses: dict[str, list[int]] = {}
    stop = asyncio.Event()

    async def ask(name: str, method: str, path: str, ok: int, **kw: Any) -> None:
        n = 0
        while not stop.is_set():
            user = f"u{n}" if name == "join" else "ann"
            r = await http.request(method, path, headers=_as(user), **kw)
            statuses.setdefault(name, []).append(r.status)
            if r.status != ok:
                assert r.status == 503, (name, r.status, await r.text())
                assert (await r.json())["error"]["code"] == "unavailable"
            n += r.status == ok

    async def chaos() -> None:
        for _ in range(6):
            await asyncio.sleep(0.02)
            lost = [k async for k in raw_redis.scan_iter(match="{c:c1}:*")
                    if k != keys.events_key("c1")]
            await raw_redis.delete(*lost)
            await asyncio.sleep(0.02)
            assert [r.campaign_id for r in await heal(raw_redis, store, TTL_MS)] == ["c1"]
        stop.set()

    await asyncio.gather(
        chaos(), ask("status", "GET", "/v1/campaigns/c1", 200),
        ask("tickets", "GET", "/v1/me/tickets?campaign=c1", 200),
        ask("waitlist", "GET", "/v1/campaigns/c1/waitlist", 200),
        ask("join", "POST", "/v1/campaigns/c1/waitlist", 201, json={"sku": "tee"}))
    assert all({200, 201} & set(seen) for seen in statuses.values()), statuses
    assert any(503 in seen for seen in statuses.values()), "the flushes were hit"
    await persister.drain()
    summary = await audit(store)
    assert summary["ok"], summary
    joined = statuses["join"].count(201)
    waiting = await raw_redis.zcard(keys.campaign_keys("c1").waitlist)
    assert waiting == joined  # every join answered 201 survived the heals, no other
