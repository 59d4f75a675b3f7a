"""Load generator for HTTP on loopback: POST JSON with per-request user ids.

Two modes, each over N worker processes (one uvloop loop each):

- closed: C connections, each sending request after request for D seconds.
  Answers "how many requests per second can the server finish".
- open:   requests on a fixed timetable at R req/s for D seconds. Latency is
  measured from the *scheduled* send time, so a stalled server is charged for
  every request that should have gone out meanwhile (no coordinated omission).

Two client engines: "raw" (an asyncio Protocol speaking HTTP/1.1 keep-alive,
requests pre-rendered as bytes) and "aiohttp" (ClientSession). On the 2-core
dev box raw is several times cheaper per request, so it is the default; the
aiohttp engine is there to cross-check the raw client's parsing.

    python -m bench.loadgen --url http://127.0.0.1:8080/v1/campaigns/c1/claims \
        --mode closed --concurrency 64 --duration 5
    python -m bench.loadgen --url ... --mode open --rate 2000 --duration 10 --users 20000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import random
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import orjson

Mode = Literal["closed", "open"]
Engine = Literal["raw", "aiohttp"]
HeadersFor = Callable[[str], Mapping[str, str]]
BodyFor = Callable[[str], bytes]
"""A request body per user (e.g. a SKU picked from the user id)."""
TRANSPORT_ERROR = 0  # status recorded when no HTTP answer came back

# ------------------------------------------------------------------ users and headers


@dataclass(frozen=True)
class Users:
    """Which user each request comes from.

    count=None: a new id per request (u0, u1, ...), globally distinct across workers.
    count=K, mode="round_robin": u0..u{K-1} in turn (across all workers together).
    count=K, mode="random": uniformly random among the K.
    ids: an explicit list, used round-robin (overrides prefix/count).
    """
    count: int | None = None
    mode: Literal["round_robin", "random"] = "round_robin"
    prefix: str = "u"
    start: int = 0
    ids: tuple[str, ...] | None = None

    def stream(self, worker: int, workers: int, seed: int = 0) -> Iterator[str]:
        """This worker's share: strided so the workers together follow the global order."""
        if self.ids is not None:
            ids = self.ids
            return (ids[n % len(ids)] for n in itertools.count(worker, workers))
        p, s = self.prefix, self.start
        if self.count is None:
            return (f"{p}{s + n}" for n in itertools.count(worker, workers))
        k = self.count
        if self.mode == "random":
            rng = random.Random(seed * 1_000_003 + worker)
            return (f"{p}{s + rng.randrange(k)}" for _ in itertools.count())
        return (f"{p}{s + n % k}" for n in itertools.count(worker, workers))


class JwtBearer:
    """`Authorization: Bearer <HS256 JWT, sub=user>` per user, as the gateway expects.

    Tokens are cached per user (signing costs ~25 µs), so round-robin pools
    sign each user once per worker process.
    """

    def __init__(self, secret: str, ttl_s: int = 3600, cache: int = 200_000) -> None:
        self.secret, self.ttl_s = secret, ttl_s
        self._token = lru_cache(maxsize=cache)(self._mint)

    def _mint(self, user: str) -> str:
        import jwt  # PyJWT; only needed when tokens are used

        now = int(time.time())
        return str(jwt.encode({"sub": user, "iat": now, "exp": now + self.ttl_s},
                              self.secret, algorithm="HS256"))

    def __call__(self, user: str) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._token(user)}"}


# ------------------------------------------------------------------ results


@dataclass
class LoadResult:
    mode: str
    url: str
    engine: str
    workers: int
    connections: int
    duration_s: float            # the measured window (open: until the last answer)
    target_rate: float | None    # open loop only
    requests: int                # answers counted in the window (any status)
    ok: int                      # 2xx answers
    transport_errors: int        # no HTTP answer (refused, reset, timeout)
    unfinished: int              # open loop: scheduled but unanswered when the run ended
    throughput: float            # answers per second
    ok_throughput: float         # 2xx per second
    status_counts: dict[int, int]
    error_codes: dict[str, int]  # error.code of 4xx/5xx bodies; transport errors by kind
    latency_ms: dict[str, float]
    send_lag_ms: dict[str, float] | None  # open loop: scheduled -> written to the socket
    latencies_us: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("latencies_us")
        d["status_counts"] = {str(k): v for k, v in self.status_counts.items()}
        return d

    def summary(self) -> str:
        lat = self.latency_ms
        rate = f" target {self.target_rate:,.0f}/s" if self.target_rate else ""
        lines = [
            f"{self.mode}-loop {self.engine} x{self.workers} procs, {self.connections} conns,"
            f" {self.duration_s:.1f}s{rate}",
            f"  answers {self.requests:,}  ({self.throughput:,.0f}/s,"
            f" 2xx {self.ok_throughput:,.0f}/s)"
            f"  transport errors {self.transport_errors:,}  unfinished {self.unfinished:,}",
            f"  status {dict(sorted(self.status_counts.items()))}  codes {self.error_codes}",
            "  latency ms  " + "  ".join(f"{k} {v:.2f}" for k, v in lat.items()),
        ]
        if self.send_lag_ms:
            lines.append("  send lag ms " + "  ".join(f"{k} {v:.2f}"
                                                     for k, v in self.send_lag_ms.items()))
        return "\n".join(lines)


def percentiles_ms(us: np.ndarray) -> dict[str, float]:
    if us.size == 0:
        return {}
    q = np.percentile(us, [50, 90, 99, 99.9]) / 1000.0
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2]), "p99.9": float(q[3]),
            "max": float(us.max()) / 1000.0, "mean": float(us.mean()) / 1000.0}


# ------------------------------------------------------------------ raw HTTP/1.1 client


class _Closed(Exception):
    pass


class _RawConn(asyncio.Protocol):
    """One keep-alive connection, one request in flight; just enough HTTP/1.1."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.must_close = False
        self.why = "conn_error"  # what connection_lost reports: "timeout" if we aborted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(_Closed(self.why))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        w = self.waiter
        if w is None or w.done():
            return
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            total = end + 4 + int(head[i + 17:j if j > 0 else len(head)])
            if len(buf) < total:
                return
            body = bytes(buf[end + 4:total])
            del buf[:total]
        elif b"transfer-encoding: chunked" in head:
            parsed = _dechunk(buf, end + 4)
            if parsed is None:
                return
            body, total = parsed
            del buf[:total]
        else:  # no length: body runs to close; we never expect this from aiohttp
            self.must_close = True
            body = bytes(buf[end + 4:])
            buf.clear()
        if b"\r\nconnection: close" in head:
            self.must_close = True
        w.set_result((int(head[9:12]), body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise _Closed("closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        start = eol + 2
        if size == 0:
            fin = buf.find(b"\r\n", start)  # no trailers expected
            return (bytes(out), fin + 2) if fin >= 0 else None
        if len(buf) < start + size + 2:
            return None
        out += buf[start:start + size]
        pos = start + size + 2


# ------------------------------------------------------------------ worker side


@dataclass
class _Plan:
    mode: Mode
    url: str
    engine: Engine
    workers: int
    duration: float
    warmup: float
    rate: float
    conns: list[int]              # connections per worker
    body: bytes | BodyFor
    users: Users
    user_header: str | None
    headers: dict[str, str]
    headers_for: HeadersFor | None
    timeout: float
    drain: float
    seed: int


class _Recorder:
    def __init__(self) -> None:
        self.lat = array("d")      # seconds
        self.lag = array("d")      # open loop: scheduled -> sent
        self.status: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()
        self.transport_errors = 0
        self.last = 0.0            # monotonic time of the last answer

    def answer(self, status: int, body: bytes, latency: float) -> None:
        self.lat.append(latency)
        self.last = time.monotonic()
        self.status[status] += 1
        if status >= 400:
            try:
                self.codes[str(orjson.loads(body)["error"]["code"])] += 1
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.codes[f"http_{status}"] += 1

    def failure(self, kind: str) -> None:
        self.transport_errors += 1
        self.status[TRANSPORT_ERROR] += 1
        self.codes[kind] += 1


class _Client:
    """Engine-neutral: `send(user) -> (status, body)` over one connection."""

    def __init__(self, plan: _Plan, session: Any = None) -> None:
        self.plan = plan
        u = urlsplit(plan.url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.session = session
        self.conn: _RawConn | None = None
        self.sent_at = 0.0
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        static = "".join(f"{k}: {v}\r\n" for k, v in plan.headers.items())
        # A fixed body's length goes into the prefix once; a per-user body's per request.
        length = "" if callable(plan.body) else f"Content-Length: {len(plan.body)}\r\n"
        self.prefix = (f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                       f"Content-Type: application/json\r\n{length}{static}").encode()
        self.user_hdr = f"{plan.user_header}: ".encode() if plan.user_header else None

    def render(self, user: str) -> bytes:
        parts = [self.prefix]
        if self.user_hdr is not None:
            parts += [self.user_hdr, user.encode(), b"\r\n"]
        if self.plan.headers_for is not None:
            parts.append("".join(f"{k}: {v}\r\n" for k, v in
                                 self.plan.headers_for(user).items()).encode())
        body = self.body(user)
        if callable(self.plan.body):
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts += [b"\r\n", body]
        return b"".join(parts)

    def body(self, user: str) -> bytes:
        return self.plan.body(user) if callable(self.plan.body) else self.plan.body

    def aiohttp_headers(self, user: str) -> dict[str, str]:
        h = {"Content-Type": "application/json", **self.plan.headers}
        if self.plan.user_header:
            h[self.plan.user_header] = user
        if self.plan.headers_for is not None:
            h.update(self.plan.headers_for(user))
        return h

    async def connect(self) -> None:
        if self.session is not None:
            return
        loop = asyncio.get_running_loop()
        _, self.conn = await asyncio.wait_for(
            loop.create_connection(_RawConn, self.host, self.port), self.plan.timeout)

    async def send(self, user: str) -> tuple[int, bytes]:
        self.sent_at = time.monotonic()
        if self.session is not None:
            async with self.session.post(self.plan.url, data=self.body(user),
                                         headers=self.aiohttp_headers(user)) as r:
                return int(r.status), await r.read()
        if self.conn is None or self.conn.closed:
            await self.connect()
        assert self.conn is not None
        status, body = await self.conn.request(self.render(user))
        if self.conn.must_close:
            self.conn.close()
        return status, body

    def abort_if_stuck(self, now: float) -> None:
        c = self.conn
        if c is not None and c.waiter is not None and not c.waiter.done() \
                and now - self.sent_at > self.plan.timeout:
            c.why = "timeout"
            c.close()


async def _guarded(client: _Client, user: str, rec: _Recorder
                   ) -> tuple[int, bytes] | None:
    try:
        return await client.send(user)
    except _Closed as exc:
        rec.failure(str(exc))
    except (TimeoutError, OSError) as exc:
        rec.failure("timeout" if isinstance(exc, TimeoutError) else "conn_error")
    except Exception as exc:  # aiohttp client errors, bad responses
        rec.failure(type(exc).__name__)
    client.conn = None  # reconnect on next use
    await asyncio.sleep(0.01)  # bounded back-off: don't spin on a refused port
    return None


async def _closed_conn(client: _Client, users: Iterator[str], rec: _Recorder,
                       t_rec: float, t_end: float, done: Any, idx: int) -> None:
    now = time.monotonic()
    while now < t_end:
        res = await _guarded(client, next(users), rec)
        t1 = time.monotonic()
        if res is not None and t_rec <= t1 <= t_end:
            rec.answer(res[0], res[1], t1 - client.sent_at)
            done[idx] += 1
        now = t1


async def _open_conn(client: _Client, users: Iterator[str], rec: _Recorder,
                     queue: asyncio.Queue[float | None], done: Any, idx: int,
                     inflight: list[int]) -> None:
    while True:
        t_sched = await queue.get()
        if t_sched is None:
            return
        inflight[0] += 1
        res = await _guarded(client, next(users), rec)
        inflight[0] -= 1
        t1 = time.monotonic()
        rec.lag.append(client.sent_at - t_sched)
        if res is not None:
            rec.answer(res[0], res[1], t1 - t_sched)
            done[idx] += 1


async def _watchdog(clients: list[_Client], stop: asyncio.Event) -> None:
    # One timer for all connections instead of one per request.
    while not stop.is_set():
        now = time.monotonic()
        for c in clients:
            c.abort_if_stuck(now)
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass


async def _worker_async(plan: _Plan, w: int, pipe: mpc.Connection, done: Any) -> dict[str, Any]:
    n = plan.conns[w]
    users = plan.users.stream(w, plan.workers, plan.seed)
    rec = _Recorder()
    session = None
    if plan.engine == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=n, force_close=False),
            timeout=aiohttp.ClientTimeout(total=plan.timeout))
    clients = [_Client(plan, session) for _ in range(n)]
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        pipe.send(("ready", w))
        loop = asyncio.get_running_loop()
        start_at: float = await loop.run_in_executor(None, pipe.recv)
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        stop = asyncio.Event()
        dog = asyncio.ensure_future(_watchdog(clients, stop))
        unfinished = 0
        if plan.mode == "closed":
            t_rec, t_end = start_at + plan.warmup, start_at + plan.warmup + plan.duration
            await asyncio.gather(*(_closed_conn(c, users, rec, t_rec, t_end, done, w)
                                   for c in clients))
        else:
            unfinished = await _open_run(plan, w, clients, users, rec, done, start_at)
        stop.set()
        await dog
    finally:
        for c in clients:
            if c.conn is not None:
                c.conn.close()
        if session is not None:
            await session.close()
    return {"status": dict(rec.status), "codes": dict(rec.codes),
            "transport_errors": rec.transport_errors, "unfinished": unfinished,
            "elapsed": rec.last - start_at,
            "lat": rec.lat.tobytes(), "lag": rec.lag.tobytes()}


async def _open_run(plan: _Plan, w: int, clients: list[_Client], users: Iterator[str],
                    rec: _Recorder, done: Any, start_at: float) -> int:
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    inflight = [0]
    tasks = [asyncio.ensure_future(_open_conn(c, users, rec, queue, done, w, inflight))
             for c in clients]
    step = plan.workers / plan.rate  # this worker's slots interleave with the others'
    t_end = start_at + plan.duration
    k = 0
    t_next = start_at + w / plan.rate
    while t_next < t_end:
        now = time.monotonic()
        while t_next <= now and t_next < t_end:  # catch up: enqueue everything due
            queue.put_nowait(t_next)
            k += 1
            t_next = start_at + w / plan.rate + k * step
        if t_next < t_end:
            await asyncio.sleep(t_next - time.monotonic())
    for _ in tasks:
        queue.put_nowait(None)
    _, pending = await asyncio.wait(tasks, timeout=plan.drain)
    # Whatever is still queued or in flight never got its answer in time.
    unfinished = sum(1 for _ in range(queue.qsize()) if queue.get_nowait() is not None)
    unfinished += inflight[0]
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return unfinished


def _worker_main(plan: _Plan, w: int, pipe: mpc.Connection, done: Any) -> None:
    import ctypes
    import gc
    import signal

    import uvloop

    # What the fork inherited (the parent's modules, its cache of minted tokens: a
    # hundred thousand GC-tracked nodes) is never garbage: frozen, the worker's full
    # collections do not walk it. They did, for tens of ms each, and every request
    # scheduled meanwhile was charged the stall as latency (JWT targets only).
    gc.collect()
    gc.freeze()

    try:  # no load left running if the parent is killed outright
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    try:
        result = uvloop.run(_worker_async(plan, w, pipe, done))
        pipe.send(("result", result))
    except BaseException as exc:  # report, never hang the parent
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        pipe.close()


# ------------------------------------------------------------------ parent side


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _run(plan: _Plan, progress: bool) -> LoadResult:
    ctx = mp.get_context("fork")  # lets headers_for be any callable, even a closure
    done = ctx.RawArray("q", plan.workers)  # live counts for the progress bar, no locks
    pipes: list[mpc.Connection] = []
    procs = []
    for w in range(plan.workers):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker_main, args=(plan, w, child, done), daemon=True)
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    try:
        for pipe in pipes:  # wait until every worker has its connections up
            if not pipe.poll(plan.timeout + 10):
                raise TimeoutError("a load worker did not connect in time")
            kind, payload = pipe.recv()
            if kind == "error":
                raise RuntimeError(f"load worker failed: {payload}")
        start_at = time.monotonic() + 0.1
        for pipe in pipes:
            pipe.send(start_at)
        total = plan.warmup + plan.duration
        results = _collect(pipes, start_at, total, plan.drain + plan.timeout + 15, done,
                           progress and total >= 2.0)
    finally:
        for p in procs:
            p.join(2)
            if p.is_alive():
                p.terminate()
                p.join(2)
    return _merge(plan, results)


def _collect(pipes: list[mpc.Connection], start_at: float, total: float, slack: float,
             done: Any, show: bool) -> list[dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    deadline = start_at + total + slack
    bar = None
    if show:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]load"), BarColumn(), TextColumn("{task.description}"),
                       TimeRemainingColumn(), transient=True)
        bar.start()
        task = bar.add_task("", total=total)
    try:
        while len(results) < len(pipes):
            if time.monotonic() > deadline:
                raise TimeoutError("load workers did not report in time")
            ready = mpc.wait([p for i, p in enumerate(pipes) if i not in results], 0.25)
            for pipe in ready:
                assert isinstance(pipe, mpc.Connection)
                i = pipes.index(pipe)
                kind, payload = pipe.recv()
                if kind == "error":
                    raise RuntimeError(f"load worker {i} failed: {payload}")
                results[i] = payload
            if bar is not None:
                el = min(max(0.0, time.monotonic() - start_at), total)
                n = sum(done)
                bar.update(task, completed=el,
                           description=f"{n:,} answers, {n / el if el > 0 else 0:,.0f}/s")
    finally:
        if bar is not None:
            bar.stop()
    return [results[i] for i in range(len(pipes))]


def _merge(plan: _Plan, results: list[dict[str, Any]]) -> LoadResult:
    status: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    lat_parts, lag_parts = [], []
    for r in results:
        status.update(r["status"])
        codes.update(r["codes"])
        lat_parts.append(np.frombuffer(r["lat"], dtype=np.float64))
        lag_parts.append(np.frombuffer(r["lag"], dtype=np.float64))
    lat_us = np.concatenate(lat_parts) * 1e6
    lag_us = np.concatenate(lag_parts) * 1e6
    answers = sum(v for k, v in status.items() if k != TRANSPORT_ERROR)
    ok = sum(v for k, v in status.items() if 200 <= k < 300)
    dur = plan.duration
    if plan.mode == "open":  # a server that falls behind answers after the timetable ends
        dur = max(dur, max(r["elapsed"] for r in results))
    return LoadResult(
        mode=plan.mode, url=plan.url, engine=plan.engine, workers=plan.workers,
        connections=sum(plan.conns), duration_s=dur,
        target_rate=plan.rate if plan.mode == "open" else None,
        requests=answers, ok=ok, transport_errors=sum(r["transport_errors"] for r in results),
        unfinished=sum(r["unfinished"] for r in results),
        throughput=answers / dur, ok_throughput=ok / dur,
        status_counts=dict(status), error_codes=dict(codes),
        latency_ms=percentiles_ms(lat_us),
        send_lag_ms=percentiles_ms(lag_us) if plan.mode == "open" else None,
        latencies_us=lat_us)


def _body_bytes(body: bytes | str | Mapping[str, Any] | BodyFor) -> bytes | BodyFor:
    if callable(body):
        return body
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return orjson.dumps(dict(body))


def default_workers() -> int:
    """One load process per core, but at most half the box when it is small:
    the server under test needs the other half."""
    return max(1, (os.cpu_count() or 2) // 2)


def run_closed(url: str, *, concurrency: int = 64, duration: float = 5.0,
               warmup: float = 0.0, workers: int | None = None,
               body: bytes | str | Mapping[str, Any] | BodyFor = b'{"sku":"hot","qty":1}',
               users: Users | None = None, user_header: str | None = "X-User-Id",
               headers: Mapping[str, str] | None = None, headers_for: HeadersFor | None = None,
               engine: Engine = "raw", timeout: float = 10.0, seed: int = 0,
               progress: bool = True) -> LoadResult:
    """`concurrency` connections in total, each sending back-to-back for `duration` s
    (after `warmup` s that are not counted). Latency is per request, send to answer."""
    workers = min(workers or default_workers(), concurrency)
    plan = _Plan("closed", url, engine, workers, duration, warmup, 0.0,
                 _split(concurrency, workers), _body_bytes(body), users or Users(),
                 user_header, dict(headers or {}), headers_for, timeout, timeout, seed)
    return _run(plan, progress)


def run_open(url: str, *, rate: float, duration: float = 10.0, connections: int = 256,
             workers: int | None = None,
             body: bytes | str | Mapping[str, Any] | BodyFor = b'{"sku":"hot","qty":1}',
             users: Users | None = None, user_header: str | None = "X-User-Id",
             headers: Mapping[str, str] | None = None, headers_for: HeadersFor | None = None,
             engine: Engine = "raw", timeout: float = 10.0, drain: float = 10.0,
             seed: int = 0, progress: bool = True) -> LoadResult:
    """`rate` requests/s on a fixed timetable for `duration` s, over at most
    `connections` keep-alive connections in total. When all are busy, requests
    wait in line and the wait counts in their latency. Requests not answered
    `drain` s after the timetable ends count as `unfinished`."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    workers = min(workers or default_workers(), connections)
    plan = _Plan("open", url, engine, workers, duration, 0.0, float(rate),
                 _split(connections, workers), _body_bytes(body), users or Users(),
                 user_header, dict(headers or {}), headers_for, timeout, drain, seed)
    return _run(plan, progress)


# ------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", choices=["closed", "open"], default="closed")
    ap.add_argument("--concurrency", "-c", type=int, default=64,
                    help="closed: connections; open: max connections")
    ap.add_argument("--duration", "-d", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.0, help="closed only")
    ap.add_argument("--rate", "-r", type=float, default=1000.0, help="open: requests/s")
    ap.add_argument("--workers", "-w", type=int, default=None,
                    help=f"load processes (default {default_workers()})")
    ap.add_argument("--engine", choices=["raw", "aiohttp"], default="raw")
    ap.add_argument("--body", default='{"sku":"hot","qty":1}')
    ap.add_argument("--users", type=int, default=None,
                    help="pool size K (default: a distinct user per request)")
    ap.add_argument("--user-mode", choices=["round_robin", "random"], default="round_robin")
    ap.add_argument("--user-prefix", default="u")
    ap.add_argument("--user-header", default="X-User-Id", help="'' to send none")
    ap.add_argument("--header", "-H", action="append", default=[], metavar="NAME:VALUE")
    ap.add_argument("--jwt-secret", default=None,
                    help="send Authorization: Bearer <HS256 JWT with sub=user>")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    headers = dict(h.split(":", 1) for h in a.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    common: dict[str, Any] = dict(
        workers=a.workers, body=a.body, engine=a.engine, timeout=a.timeout,
        users=Users(count=a.users, mode=a.user_mode, prefix=a.user_prefix),
        user_header=a.user_header or None, headers=headers,
        headers_for=JwtBearer(a.jwt_secret) if a.jwt_secret else None,
        progress=not a.no_progress and sys.stderr.isatty())
    if a.mode == "closed":
        res = run_closed(a.url, concurrency=a.concurrency, duration=a.duration,
                         warmup=a.warmup, **common)
    else:
        res = run_open(a.url, rate=a.rate, duration=a.duration, connections=a.concurrency,
                       **common)
    print(orjson.dumps(res.to_dict(), option=orjson.OPT_INDENT_2).decode() if a.json
          else res.summary())
    return 0 if res.requests > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
