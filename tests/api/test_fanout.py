"""The SSE fan-out on real loopback sockets: slow streams skip, gone ones end, keepalives."""

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from stampede.api import fanout
from stampede.api.fanout import Fanout, Frame, Stream

BIG = 32 * 1024
"""A frame this large fills a small socket buffer in a few frames."""


@dataclass
class Pair:
    server: asyncio.Transport
    client: socket.socket
    """Read only when the test says (not by the loop in the background)."""


@pytest.fixture
async def pairs() -> AsyncIterator[list[Pair]]:
    """Connected loopback pairs (the server side a bare transport), small buffers."""
    accepted: asyncio.Queue[asyncio.Transport] = asyncio.Queue()

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            accepted.put_nowait(transport)  # type: ignore[arg-type]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    made: list[Pair] = []

    async def connect() -> Pair:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        pair = Pair(await asyncio.wait_for(accepted.get(), 5), sock)
        made.append(pair)
        return pair

    await connect()
    await connect()
    try:
        yield made
    finally:
        for pair in made:
            pair.client.close()
            pair.server.close()
        server.close()
        await server.wait_closed()


def frame(n: int, size: int = BIG) -> Frame:
    body = f"{n:06d}".encode() * (size // 6)
    return Frame.of(f"f{n}", b"id: f%d\ndata: %b\n\n" % (n, body))


async def read_some(client: socket.socket, quiet_s: float = 0.2) -> bytes:
    """What the client can read until nothing comes for `quiet_s`."""
    loop, data = asyncio.get_running_loop(), b""
    while True:
        try:
            data += await asyncio.wait_for(loop.sock_recv(client, 1 << 20), quiet_s)
        except TimeoutError:
            return data


async def read_frames(client: socket.socket, quiet_s: float = 0.05) -> list[bytes]:
    """Every frame's id the client can read now (the stream is not chunked here)."""
    data = await read_some(client, quiet_s)
    return [block.split(b"\n")[0][4:] for block in data.split(b"\n\n") if block]


async def test_a_slow_stream_skips_to_the_newest_frame_and_stays_bounded(
        pairs: list[Pair]) -> None:
    slow, fast = pairs
    out = Fanout()
    slow_stream, fast_stream = Stream(slow.server, False, ""), Stream(fast.server, False, "")
    out.streams |= {slow_stream, fast_stream}
    got_fast: list[bytes] = []
    for n in range(30):
        out.publish(frame(n))
        got_fast += await read_frames(fast.client)  # this one reads as it goes
        out.tick()
    assert got_fast == [b"f%d" % n for n in range(30)]
    # The slow one never read: it was skipped, with at most one frame past the bound queued.
    assert slow_stream in out.behind and fast_stream not in out.behind
    assert slow.server.get_write_buffer_size() <= fanout.SLOW_BYTES + BIG
    # Once it reads, the next ticks catch it up with the newest frame, not the backlog.
    got_slow = await read_frames(slow.client)
    for _ in range(20):
        out.tick()
        got_slow += await read_frames(slow.client)
        if slow_stream not in out.behind:
            break
    assert got_slow[-1] == b"f29" and len(got_slow) < 30, got_slow
    assert slow_stream.sent == "f29" and slow_stream not in out.behind


async def test_gone_clients_are_ended_by_the_sweep_and_quiet_streams_kept_alive(
        pairs: list[Pair], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "CHECK_S", 0.0)
    monkeypatch.setattr(fanout, "HEARTBEAT_S", 0.05)
    stays, leaves = pairs
    out = Fanout()
    staying, leaving = Stream(stays.server, True, ""), Stream(leaves.server, True, "")
    out.streams |= {staying, leaving}
    leaves.client.close()
    await asyncio.sleep(0.1)  # the server side sees the FIN
    out.tick()
    assert leaving.done.done() and not staying.done.done()
    assert await read_some(stays.client) == b"%x\r\n: keepalive\n\n\r\n" % len(
        b": keepalive\n\n")
    out.end(b"event: gone\n\n")
    assert staying.done.done()
    assert await read_some(stays.client) == b"d\r\nevent: gone\n\n\r\n"
