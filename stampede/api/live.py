"""The live feed: a campaign's state as server-sent events.

`GET /v1/campaigns/{id}/live` streams, per SKU, units available, sold_out and
the next wave's time, the campaign's state and the waiting room's serving
counter, each time one of them changes.

One poller per campaign and worker reads the campaign (one script call) every
tick, and only while someone listens: the first listener starts it, the last
one to leave stops it. Whatever the number of listeners, Redis sees one read
per tick per worker. A listener keeps only the newest event, never a queue:
every event is a whole snapshot, so a slow client skips states, it never
falls behind, and the memory per listener is bounded.

Each event's `id:` is a hash of what it carries (the same state has the same
id on every worker). A reconnect, with `Last-Event-ID` or without, is sent
the current state at once: with snapshots there is nothing to replay, so
resuming needs no history.
"""

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from stampede import Engine
from stampede.api.errors import ApiError
from stampede.api.routing import CID, ApiRoutes
from stampede.domain.models import LiveState
from stampede.logs import log
from stampede.metrics import LIVE_LISTENERS, LIVE_POLLS

api = ApiRoutes("live")

HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""
CHECK_S = 1.0
"""How often an idle stream checks that its client is still there."""
RETRY_MS = 1000
"""What the browser waits before reconnecting (the stream's `retry:`)."""

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    data: bytes

    @classmethod
    def of(cls, state: LiveState) -> "Event":
        data = _encoder.encode(state)
        return cls(hashlib.blake2b(data, digest_size=8).hexdigest(), data)

    def frame(self) -> bytes:
        return b"id: " + self.id.encode() + b"\nevent: state\ndata: " + self.data + b"\n\n"


GONE = b"event: gone\ndata: {}\n\n"


@dataclass(eq=False)
class Listener:
    """One open stream: the newest event it has not sent yet, and a bell."""
    pending: Event | None = None
    bell: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event | None) -> None:
        self.pending = event
        self.bell.set()


@dataclass(eq=False)
class Feed:
    """One campaign's poller and the listeners it fans out to."""
    cid: str
    engine: Engine
    tick_s: float
    listeners: set[Listener] = field(default_factory=set)
    current: Event | None = None
    gone: bool = False
    first_read: asyncio.Event = field(default_factory=asyncio.Event)
    task: "asyncio.Task[None] | None" = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._poll(), name=f"live-{self.cid}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _poll(self) -> None:
        while True:
            try:
                state = await self.engine.live_state(self.cid)
                LIVE_POLLS.inc()
            except Exception as exc:  # Redis away: keep the last state, try next tick
                log.warning("live feed read failed", campaign=self.cid, error=repr(exc))
            else:
                self._publish(state)
            self.first_read.set()
            await asyncio.sleep(self.tick_s)

    def _publish(self, state: LiveState | None) -> None:
        if state is None:
            if not self.gone:
                self.gone = True
                for listener in self.listeners:
                    listener.offer(None)
            return
        event = Event.of(state)
        if self.current is not None and event.id == self.current.id:
            return
        self.current, self.gone = event, False
        for listener in self.listeners:
            listener.offer(event)


class LiveHub:
    """A worker's feeds, and the bound on its listeners."""

    def __init__(self, engine: Engine, max_listeners: int, tick_s: float) -> None:
        self.engine, self.max_listeners, self.tick_s = engine, max_listeners, tick_s
        self.feeds: dict[str, Feed] = {}
        self.count = 0
        self.closing = asyncio.Event()

    @contextlib.asynccontextmanager
    async def listen(self, cid: str) -> AsyncIterator[tuple[Feed, Listener]]:
        if self.count >= self.max_listeners:
            raise ApiError.of("live_full", limit=self.max_listeners, campaign=cid)
        feed = self.feeds.get(cid)
        if feed is None:
            feed = self.feeds[cid] = Feed(cid, self.engine, self.tick_s)
            feed.start()
        listener = Listener()
        feed.listeners.add(listener)
        self.count += 1
        LIVE_LISTENERS.inc()
        try:
            yield feed, listener
        finally:
            self.count -= 1
            LIVE_LISTENERS.dec()
            feed.listeners.discard(listener)
            if not feed.listeners and self.feeds.get(cid) is feed:
                del self.feeds[cid]
                await feed.stop()

    async def close(self) -> None:
        """On shutdown: end every stream, so draining does not wait on them."""
        self.closing.set()
        for feed in list(self.feeds.values()):
            for listener in feed.listeners:
                listener.bell.set()


LIVE = web.AppKey("live", LiveHub)


def install(app: web.Application, engine: Engine) -> None:
    hub = LiveHub(engine, engine.settings.live_max_listeners,
                  engine.settings.live_tick_ms / 1000)
    app[LIVE] = hub

    async def on_shutdown(app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(on_shutdown)


@api.route("GET", "/v1/campaigns/{cid}/live",
           "Live feed (server-sent events): per SKU available, sold_out and next wave, the "
           "campaign's state and the waiting room's serving counter, pushed when they change",
           response=LiveState, media_type="text/event-stream", errors=(404, 503),
           path_params=CID,
           headers={"Last-Event-ID": "sent by a reconnecting browser: the current state "
                                     "comes at once whatever it names"})
async def live_feed(request: web.Request) -> web.StreamResponse:
    cid = request.match_info["cid"]
    hub = request.app[LIVE]
    async with hub.listen(cid) as (feed, listener):
        await feed.first_read.wait()
        if feed.current is None or feed.gone:
            raise ApiError.of("no_campaign", campaign=cid)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        # The current state at once: a first connection and a resume alike.
        await response.write(f"retry: {RETRY_MS}\n".encode() + feed.current.frame())
        sent = feed.current.id
        await _stream(request, response, hub, listener, sent)
        return response
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with may not return)


async def _stream(request: web.Request, response: web.StreamResponse, hub: LiveHub,
                  listener: Listener, sent: str) -> None:
    quiet_since = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        while not hub.closing.is_set():
            try:
                await asyncio.wait_for(listener.bell.wait(), CHECK_S)
            except TimeoutError:
                # The server does not cancel handlers when a client leaves: look.
                if request.transport is None or request.transport.is_closing():
                    return
                if time.monotonic() - quiet_since >= HEARTBEAT_S:
                    await response.write(b": keepalive\n\n")
                    quiet_since = time.monotonic()
                continue
            listener.bell.clear()
            if hub.closing.is_set():
                return
            event = listener.pending
            if event is None:
                await response.write(GONE)
                return
            if event.id != sent:
                await response.write(event.frame())
                sent, quiet_since = event.id, time.monotonic()
