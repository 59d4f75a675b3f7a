"""The live feed over real HTTP: fan-out during a rush, resume, the listener bound."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from stampede import Engine, Settings
from stampede.api.app import make_public_app
from stampede.api.auth import Authenticator
from stampede.api.live import LIVE
from stampede.metrics import LIVE_POLLS
from stampede.outcomes import Outcome
from tests.api.conftest import JWT_SECRET, Api, serve_api
from tests.conftest import campaign_spec

TICK_S = 0.1
LISTENERS = 1000
STOCK = 40


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, live_tick_ms=int(TICK_S * 1000),
                    live_max_listeners=LISTENERS + 5)


@pytest.fixture
async def sale(engine: Engine) -> AsyncIterator[Api]:
    await engine.define_campaign("rush", campaign_spec(stock=STOCK, per_user=None))
    async with serve_api(engine) as api:
        yield api


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(id, state) of each `state` event of an SSE stream."""
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if fields.get("event") == "state":
                yield fields["id"], orjson.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


def polls() -> float:
    return LIVE_POLLS._value.get()  # type: ignore[attr-defined,no-any-return]


async def test_a_thousand_listeners_all_see_sold_out_within_a_tick(sale: Api) -> None:
    url = sale.public.make_url("/v1/campaigns/rush/live")
    seen: list[float] = []
    connected = asyncio.Semaphore(0)

    async def listen(session: aiohttp.ClientSession) -> None:
        async with session.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            first = True
            async for _id, state in events(resp):
                if first:
                    first = False
                    assert state["state"] == "open" and state["skus"][0]["available"] > 0
                    connected.release()
                if state["skus"][0]["sold_out"]:
                    seen.append(time.monotonic())
                    assert state["state"] == "sold_out"
                    return

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        listeners = [asyncio.create_task(listen(session)) for _ in range(LISTENERS)]
        for _ in range(LISTENERS):
            await asyncio.wait_for(connected.acquire(), 30)
        assert sale.public.app[LIVE].count == LISTENERS
        polls_before, started = polls(), time.monotonic()

        taken: list[float] = []

        async def buyer(n: int) -> Outcome:
            outcome = (await sale.engine.claim("rush", f"u{n}", "tee", 1)).outcome
            if outcome is Outcome.OK:
                taken.append(time.monotonic())
            return outcome

        outcomes = await asyncio.gather(*(buyer(n) for n in range(STOCK + 30)))
        sold_out_at = max(taken)  # the last unit was gone by the time its claim answered
        assert outcomes.count(Outcome.OK) == STOCK
        await asyncio.wait_for(asyncio.gather(*listeners), 10)
        elapsed = time.monotonic() - started
    lag = max(seen) - sold_out_at
    print(f"{LISTENERS} listeners: last saw sold-out {lag * 1000:.0f} ms after it happened")
    assert len(seen) == LISTENERS
    assert lag < TICK_S + 0.9, lag
    # One read per tick for them all, not one per listener.
    assert polls() - polls_before <= elapsed / TICK_S + 2
    await asyncio.sleep(0.05)
    assert not sale.public.app[LIVE].feeds, "the poller outlived its last listener"


async def test_a_reconnect_with_last_event_id_gets_the_current_state_at_once(sale: Api) -> None:
    async with sale.public.get("/v1/campaigns/rush/live") as resp:
        stream = events(resp)
        first_id, first = await anext(stream)
        assert first["campaign"] == "rush" and first["skus"][0]["available"] == STOCK
        assert first["serving"] is None
        assert (await sale.engine.claim("rush", "ann", "tee", 3)).outcome is Outcome.OK
        second_id, second = await asyncio.wait_for(anext(stream), 5)
        assert second["skus"][0]["available"] == STOCK - 3 and second_id != first_id
    assert (await sale.engine.claim("rush", "bob", "tee", 2)).outcome is Outcome.OK
    started = time.monotonic()
    async with sale.public.get("/v1/campaigns/rush/live",
                               headers={"Last-Event-ID": second_id}) as resp:
        now_id, now = await asyncio.wait_for(anext(events(resp)), 5)
    assert now["skus"][0]["available"] == STOCK - 5 and now_id not in (first_id, second_id)
    assert time.monotonic() - started < TICK_S + 0.5


async def test_an_unknown_campaign_is_404_and_leaves_no_poller(sale: Api) -> None:
    resp = await sale.public.get("/v1/campaigns/nope/live")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    assert not sale.public.app[LIVE].feeds and sale.public.app[LIVE].count == 0


async def test_listeners_past_the_bound_get_a_clean_503(tmp_path: Path, clean_redis: str) -> None:
    engine = Engine.from_url(clean_redis, Settings(data_dir=tmp_path, live_max_listeners=2))
    await engine.start()
    try:
        await engine.define_campaign("rush", campaign_spec())
        async with serve_api(engine) as api:
            first = await api.public.get("/v1/campaigns/rush/live")
            second = await api.public.get("/v1/campaigns/rush/live")
            assert first.status == second.status == 200
            third = await api.public.get("/v1/campaigns/rush/live")
            assert third.status == 503 and third.headers["Retry-After"] == "1"
            assert (await third.json())["error"]["code"] == "unavailable"
            first.close()
            second.close()
    finally:
        await engine.close()


async def test_a_client_that_leaves_frees_its_place_without_handler_cancellation(
        engine: Engine) -> None:
    """`serve`'s runner does not cancel handlers when a client goes: the stream notices."""
    await engine.define_campaign("rush", campaign_spec())
    auth = Authenticator(JWT_SECRET, True, ())
    app = make_public_app(engine, auth, {"draining": False})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/v1/campaigns/rush/live") as resp:
            await anext(events(resp))
            assert app[LIVE].count == 1
        deadline = time.monotonic() + 5
        while app[LIVE].count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert app[LIVE].count == 0 and not app[LIVE].feeds
    finally:
        await runner.cleanup()


async def test_shutdown_ends_open_streams_at_once(engine: Engine) -> None:
    """Draining does not wait out the grace period on streams that never end."""
    await engine.define_campaign("rush", campaign_spec())
    app = make_public_app(engine, Authenticator(JWT_SECRET, True, ()), {"draining": False})
    runner = web.AppRunner(app, shutdown_timeout=10)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/v1/campaigns/rush/live") as resp:
        await anext(events(resp))
        started = time.monotonic()
        await runner.cleanup()
        assert time.monotonic() - started < 2, "an open stream held up the shutdown"


async def test_the_waiting_rooms_serving_counter_is_pushed(engine: Engine) -> None:
    room = {"rate_per_s": 1000, "burst": 100, "max_active": 100}
    await engine.define_campaign("room", campaign_spec(waiting_room=room, waitlist={}))
    async with serve_api(engine) as api:
        async with api.public.get("/v1/campaigns/room/live") as resp:
            stream = events(resp)
            _, first = await anext(stream)
            assert first["serving"] == 0
            ticket = await api.public.post("/v1/campaigns/room/queue",
                                           headers={"X-User-Id": "ann"})
            assert ticket.status == 201
            _, after = await asyncio.wait_for(anext(stream), 5)
            assert after["serving"] == 1


async def test_an_http_1_0_client_gets_the_frames_unchunked(sale: Api) -> None:
    """The fan-out writes raw bytes: as one chunk on HTTP/1.1, as they are on HTTP/1.0."""
    reader, writer = await asyncio.open_connection(sale.public.host, sale.public.port)
    try:
        writer.write(b"GET /v1/campaigns/rush/live HTTP/1.0\r\nHost: test\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.0 200") and b"chunked" not in head.lower()
        first = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
        assert first.startswith(b"retry: 1000\nid: ")
        assert (await sale.engine.claim("rush", "ann", "tee", 2)).outcome is Outcome.OK
        second = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
        assert second.startswith(b"id: "), second
        data = second.split(b"\ndata: ", 1)[1]
        assert orjson.loads(data)["skus"][0]["available"] == STOCK - 2
    finally:
        writer.close()
