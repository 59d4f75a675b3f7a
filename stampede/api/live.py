"""The live feed: a campaign's state as server-sent events.

`GET /v1/campaigns/{id}/live` streams, per SKU, units available, sold_out and
the next wave's time, the campaign's state and the waiting room's serving
counter, each time one of them changes.

One poller per campaign and worker reads the campaign (one script call) every
tick, and only while someone listens: the first listener starts it, the last
one to leave stops it. Whatever the number of listeners, Redis sees one read
per tick per worker. A changed state is encoded once per tick and the same
bytes are written by the poller to every stream (api/fanout.py), so a
listener costs one socket write per change and no wakeup of its own. Every
event is a whole snapshot, so a slow client skips to the newest one, it never
falls behind, and the memory per listener is bounded.

Each event's `id:` is a hash of what it carries (the same state has the same
id on every worker). A reconnect, with `Last-Event-ID` or without, is sent
the current state at once: with snapshots there is nothing to replay, so
resuming needs no history.
"""

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from stampede import Engine
from stampede.api.errors import ApiError
from stampede.api.fanout import GONE, RETRY_MS, Fanout, Frame, stream_response
from stampede.api.routing import CID, ApiRoutes
from stampede.domain.models import LiveState
from stampede.logs import log
from stampede.metrics import LIVE_LISTENERS, LIVE_POLLS

api = ApiRoutes("live")

_encoder = msgspec.json.Encoder()


def frame_of(state: LiveState) -> Frame:
    """The state as one SSE frame; its id is a hash of what it carries."""
    data = _encoder.encode(state)
    digest = hashlib.blake2b(data, digest_size=8).hexdigest()
    return Frame.of(digest, b"id: " + digest.encode() + b"\nevent: state\ndata: " + data
                    + b"\n\n")


@dataclass(eq=False)
class Feed:
    """One campaign's poller and the streams it fans out to."""
    cid: str
    engine: Engine
    tick_s: float
    fanout: Fanout = field(default_factory=Fanout)
    listeners: int = 0
    gone: bool = False
    first_read: asyncio.Event = field(default_factory=asyncio.Event)
    task: "asyncio.Task[None] | None" = None

    @property
    def current(self) -> Frame | None:
        return self.fanout.current

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
            self.fanout.tick()
            await asyncio.sleep(self.tick_s)

    def _publish(self, state: LiveState | None) -> None:
        if state is None:
            if not self.gone:
                self.gone = True
                self.fanout.end(GONE)
            return
        frame = frame_of(state)
        current = self.fanout.current
        if current is not None and frame.id == current.id and not self.gone:
            return
        self.gone = False
        self.fanout.publish(frame)


class LiveHub:
    """A worker's feeds, and the bound on its listeners."""

    def __init__(self, engine: Engine, max_listeners: int, tick_s: float) -> None:
        self.engine, self.max_listeners, self.tick_s = engine, max_listeners, tick_s
        self.feeds: dict[str, Feed] = {}
        self.count = 0
        self.closing = asyncio.Event()

    @contextlib.asynccontextmanager
    async def listen(self, cid: str) -> AsyncIterator[Feed]:
        if self.count >= self.max_listeners:
            raise ApiError.of("live_full", limit=self.max_listeners, campaign=cid)
        feed = self.feeds.get(cid)
        if feed is None:
            feed = self.feeds[cid] = Feed(cid, self.engine, self.tick_s)
            feed.start()
        feed.listeners += 1
        self.count += 1
        LIVE_LISTENERS.inc()
        try:
            yield feed
        finally:
            self.count -= 1
            LIVE_LISTENERS.dec()
            feed.listeners -= 1
            if not feed.listeners and self.feeds.get(cid) is feed:
                del self.feeds[cid]
                await feed.stop()

    async def close(self) -> None:
        """On shutdown: end every stream, so draining does not wait on them."""
        self.closing.set()
        for feed in list(self.feeds.values()):
            feed.fanout.end()


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
    async with hub.listen(cid) as feed:
        await feed.first_read.wait()
        current = feed.current
        if current is None or feed.gone:
            raise ApiError.of("no_campaign", campaign=cid)
        response = stream_response(request)
        await response.prepare(request)
        # The current state at once: a first connection and a resume alike. From then
        # on the feed's poller writes to the stream; this handler only waits for its end.
        with contextlib.suppress(ConnectionResetError):
            stream = await feed.fanout.attach(
                request, response, f"retry: {RETRY_MS}\n".encode() + current.data, current.id)
            if stream is not None:
                try:
                    if not hub.closing.is_set() and not feed.gone:
                        await stream.done
                finally:
                    feed.fanout.detach(stream)
        return response
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the with may not return)
