"""One SSE frame written to many open streams without waking their handlers.

The public live feed (api/live.py) and the console's feed (api/console_feed.py)
send every listener the same snapshot. Waking each stream's handler to write
it costs a task switch, a timer and aiohttp's write path per listener per
tick, and with a thousand listeners that competes with claims for the event
loop. Here the poller builds the frame's bytes once per tick (as SSE text and
as one HTTP/1.1 chunk) and hands them straight to each stream's transport;
the handlers only wait for their stream to end.

A listener whose socket is not keeping up (more than SLOW_BYTES unsent) is
skipped; it gets the newest frame once its buffer has drained, so a slow
client skips states instead of queueing them and its memory stays bounded.
Gone clients and keepalives are found by a sweep every CHECK_S, never by a
timer per stream.
"""

import asyncio
from dataclasses import dataclass
from typing import Self

from aiohttp import web
from aiohttp.http import HttpVersion11

HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""
CHECK_S = 1.0
"""How often the streams are looked at for clients that have gone."""
SLOW_BYTES = 64 * 1024
"""Unsent bytes past which a stream is skipped until it drains."""

RETRY_MS = 1000
"""What the browser waits before reconnecting (the stream's `retry:`)."""

KEEPALIVE = b": keepalive\n\n"
GONE = b"event: gone\ndata: {}\n\n"
"""The last event of a stream whose feed has ended."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One SSE frame, both as text and as an HTTP/1.1 chunk, built once for every stream."""
    id: str
    data: bytes
    chunk: bytes

    @classmethod
    def of(cls, id: str, data: bytes) -> Self:
        return cls(id, data, _chunk(data))


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


KEEPALIVE_CHUNK = _chunk(KEEPALIVE)


def stream_response(request: web.Request) -> web.StreamResponse:
    """The SSE response; on HTTP/1.1 chunked on purpose, so the fan-out knows its framing."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    if request.version == HttpVersion11:
        response.enable_chunked_encoding()
    return response


class Stream:
    """One open stream, written by the fan-out once its handler has sent the first frame."""
    __slots__ = ("transport", "chunked", "sent", "done")

    def __init__(self, transport: asyncio.BaseTransport, chunked: bool, sent: str) -> None:
        self.transport, self.chunked, self.sent = transport, chunked, sent
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def gone(self) -> bool:
        return self.transport.is_closing()

    def slow(self) -> bool:
        return self.transport.get_write_buffer_size() > SLOW_BYTES  # type: ignore[attr-defined,no-any-return]

    def write(self, data: bytes, chunk: bytes) -> None:
        self.transport.write(chunk if self.chunked else data)  # type: ignore[attr-defined]

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Fanout:
    """The streams of one feed, and the newest frame they have been offered."""

    def __init__(self) -> None:
        self.streams: set[Stream] = set()
        self.behind: set[Stream] = set()
        """Streams skipped while slow: they get the newest frame once drained."""
        self.current: Frame | None = None
        self._loop = asyncio.get_running_loop()
        self._swept = self._written = self._loop.time()

    async def attach(self, request: web.Request, response: web.StreamResponse,
                     first: bytes, sent: str) -> Stream | None:
        """Send `first` (carrying frame `sent`) through aiohttp, which sends the headers
        with it, then hand the stream to the fan-out. None: the client has gone."""
        await response.write(first)
        transport = request.transport
        if transport is None or transport.is_closing():
            return None
        stream = Stream(transport, response.chunked, sent)
        self.streams.add(stream)
        if self.current is not None and self.current.id != sent:  # changed while writing
            self._offer(stream, self.current)
        return stream

    def detach(self, stream: Stream) -> None:
        self.streams.discard(stream)
        self.behind.discard(stream)

    def publish(self, frame: Frame) -> None:
        """Write a new frame to every stream that can take it now."""
        self.current = frame
        self._written = self._loop.time()
        for stream in self.streams:
            self._offer(stream, frame)

    def _offer(self, stream: Stream, frame: Frame) -> None:
        if stream.gone():
            stream.finish()
        elif stream.slow():
            self.behind.add(stream)
        else:
            stream.write(frame.data, frame.chunk)
            stream.sent = frame.id
            self.behind.discard(stream)

    def tick(self) -> None:
        """After each poll: catch up drained slow streams; every CHECK_S end the streams
        whose client has gone (the server does not cancel their handlers) and, after
        HEARTBEAT_S without a frame, send every stream a keepalive."""
        if self.behind and self.current is not None:
            for stream in list(self.behind):
                self._offer(stream, self.current)
        now = self._loop.time()
        if now - self._swept < CHECK_S:
            return
        self._swept = now
        keepalive = now - self._written >= HEARTBEAT_S
        if keepalive:
            self._written = now
        for stream in self.streams:
            if stream.gone():
                stream.finish()
            elif keepalive and not stream.slow():
                stream.write(KEEPALIVE, KEEPALIVE_CHUNK)

    def end(self, last: bytes | None = None) -> None:
        """End every stream, after writing `last` to those still there."""
        chunk = _chunk(last) if last is not None else b""
        for stream in self.streams:
            if last is not None and not stream.gone():
                stream.write(last, chunk)
            stream.finish()
