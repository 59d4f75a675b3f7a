"""The webhook delivery worker: persisted events to endpoints, signed, in order.

It reads the `events` table, never Redis or memory: what it sends is what the
store holds. Per endpoint and campaign it sends seq cursor+1, and moves the
cursor only after a 2xx, so delivery is at least once and in order; a gap (an
event not yet persisted) waits. Each message keeps one id, `<campaign>.<seq>`,
on every attempt, so a receiver drops duplicates by id. Events the endpoint
does not want move the cursor without a request. Its reads are snapshots
(`Store.read`): a poll never takes SQLite's write lock from the persister, and
with no endpoint a poll is one query.

Several workers may run against one store: each endpoint is sent by the one
worker holding its lease (stampede.durable.webhook_leases), renewed while it
sends, released on shutdown, taken over by another worker when it expires.
The worker also prunes the attempt log to a bounded age and count per endpoint.

A failed attempt (a non-2xx, a refusal, a timeout, a redirect: none is
followed) holds the endpoint back with exponential backoff and jitter; after
FAILING_AFTER in a row the endpoint shows as `failing`, and its deliveries
wait for it: nothing is dropped.

Outbound requests are guarded against server-side request forgery: http(s)
only, and every address the host resolves to (or the literal address) must
be public unless STAMPEDE_WEBHOOK_ALLOWED_NETWORKS lists it. The check sits
in the connector's resolver, so the address connected to is the one checked.
"""

import asyncio
import ipaddress
import random
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from stampede.domain.models import from_ms
from stampede.domain.netaddr import Network, parse_networks
from stampede.durable import events, webhook_payloads, webhook_signing
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.durable.webhook_leases import LeaseLost, Leases
from stampede.durable.webhooks import ALL, Webhooks
from stampede.logs import log
from stampede.metrics import (
    WEBHOOK_BACKLOG,
    WEBHOOK_DELIVERIES,
    WEBHOOK_OLDEST_UNDELIVERED,
)
from stampede.settings import Settings

BODY_READ_LIMIT = 1024
"""Bytes of an endpoint's answer read (for the attempt log); the rest is dropped."""
BATCH = 100
"""Events read per endpoint and campaign in one query."""


class RefusedAddress(OSError):
    """The URL's host is (or resolves to) an address webhooks may not reach."""


@dataclass(frozen=True)
class AddressGuard:
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_spec(cls, spec: str | None) -> "AddressGuard":
        return cls(tuple(parse_networks(spec or "")))

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be reached, or None."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in net for net in self.allowed):
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast:
            return f"{address} is not a public address"
        return None

    def check_url(self, url: str) -> str | None:
        """Why `url` may not be a webhook endpoint (scheme, host, a literal address)."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError as exc:
            return f"not a URL: {exc}"
        if parts.scheme not in ("http", "https"):
            return "the URL must be http or https"
        if not parts.hostname:
            return "the URL has no host"
        if parts.username or parts.password:
            return "the URL may not carry credentials"
        try:
            return self.refusal(parts.hostname)
        except ValueError:  # a name: its addresses are checked when it is resolved
            return None

    async def check_resolved(self, url: str) -> str | None:
        """`check_url`, then every address its host name resolves to now."""
        refused = self.check_url(url)
        host = urlsplit(url).hostname
        if refused or host is None:
            return refused
        try:
            ipaddress.ip_address(host)
            return None
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None)
        except OSError:
            return None  # cannot tell now; the worker checks again on every connect
        for info in infos:
            why = self.refusal(str(info[4][0]))
            if why:
                return f"{host}: {why}"
        return None


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing any host with an address the guard refuses."""

    def __init__(self, guard: AddressGuard) -> None:
        self.guard = guard
        self.inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        for result in found:
            why = self.guard.refusal(result["host"])
            if why:
                raise RefusedAddress(f"{host}: {why}")
        return found

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True)
class DeliverySettings:
    poll_s: float = 0.5
    connect_timeout_s: float = 3.0
    timeout_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    lease_ms: int = 30_000
    """How long an endpoint stays with the worker that took it, unless renewed."""
    attempts_keep: int = 1000
    """Newest attempts kept per endpoint in the delivery log."""
    attempts_max_age_s: float = 7 * 86_400
    """Attempts older than this leave the delivery log."""
    prune_interval_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "DeliverySettings":
        return cls(poll_s=settings.webhook_poll_ms / 1000,
                   connect_timeout_s=min(3.0, settings.webhook_timeout_s),
                   timeout_s=settings.webhook_timeout_s,
                   backoff_base_s=settings.webhook_backoff_ms / 1000,
                   backoff_max_s=settings.webhook_backoff_max_s,
                   lease_ms=settings.webhook_lease_ms,
                   attempts_keep=settings.webhook_attempts_keep,
                   attempts_max_age_s=settings.webhook_attempts_max_age_s)

    @property
    def lease_margin_ms(self) -> int:
        """Renew the lease before a send when less than this is left of it: a whole
        attempt (and its log row) fits in it, so no other worker starts meanwhile."""
        return min(int(self.timeout_s * 1000) + 1000, self.lease_ms // 2)


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str | None
    latency_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> Literal["delivered", "failed", "error"]:
        return "delivered" if self.ok else "failed" if self.status is not None else "error"


def message(row: Any) -> bytes:
    """The body of the event `row` (the same bytes on every attempt): its payload struct
    (stampede.durable.webhook_payloads, documented in the OpenAPI `webhooks`), or, for a
    type this version does not know, its fields as stored."""
    try:
        event = events.from_row(row)
    except events.BadEvent:
        event = None
    if event is not None and not isinstance(event, events.Unknown):
        return msgspec.json.encode(webhook_payloads.payload(event, row.type))
    data = {"campaign": row.campaign_id, "seq": row.seq, **msgspec.json.decode(row.data)}
    return msgspec.json.encode({"type": row.type, "version": webhook_payloads.VERSION,
                                "timestamp": from_ms(row.ts), "data": data})


def backoff_s(failures: int, settings: DeliverySettings) -> float:
    """Exponential in the failures in a row, capped, with jitter (half to all of it)."""
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * float(2 ** (failures - 1)))
    return ceiling * random.uniform(0.5, 1.0)


TEST_EVENT = "webhook.test"


def test_message(endpoint_id: str) -> bytes:
    return msgspec.json.encode({"type": TEST_EVENT, "timestamp": from_ms(_now_ms()),
                                "data": {"endpoint": endpoint_id}})


FLUSH_EVERY = 20
"""Deliveries recorded (attempt rows and the cursor) in one transaction: a commit per
message would cap delivery at the store's commit rate. A crash resends at most these."""
FLUSH_AFTER_MS = 500
"""...or sooner, once the first unrecorded delivery is this old (a slow receiver)."""


@dataclass(frozen=True)
class Delivered:
    row: Any
    attempt: Attempt
    at_ms: int


class Deliverer:
    def __init__(self, store: Store, guard: AddressGuard, settings: DeliverySettings,
                 owner: str | None = None) -> None:
        self.store, self.guard, self.settings = store, guard, settings
        self.session: aiohttp.ClientSession | None = None
        self.backlog_labels: set[str] = set()
        self.leases = Leases(store, settings.lease_ms, owner)
        self.pruned_at = 0.0

    def new_session(self) -> aiohttp.ClientSession:
        """A session whose resolver refuses what the guard refuses; no proxies."""
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.guard), limit=64)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s,
                                        sock_connect=self.settings.connect_timeout_s)
        return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)

    async def send_test(self, endpoint: Any) -> tuple[str, Attempt]:
        """Sends one signed `webhook.test` message to `endpoint` now, outside its order
        and backoff (neither its cursors nor its failures move); logs the attempt."""
        msg_id = "test." + secrets.token_hex(8)
        async with self.new_session() as session:
            self.session = session
            try:
                attempt = await self._post(endpoint, msg_id, test_message(endpoint.endpoint_id))
            finally:
                self.session = None
        WEBHOOK_DELIVERIES.labels(attempt.outcome).inc()
        async with self.store.begin() as conn:
            await conn.execute(t.webhook_attempts.insert().values(
                endpoint_id=endpoint.endpoint_id, message_id=msg_id, ts=_now_ms(),
                status=attempt.status, outcome=attempt.outcome, error=attempt.error,
                event_type=TEST_EVENT, latency_ms=attempt.latency_ms))
        return msg_id, attempt

    async def run(self, stop: asyncio.Event) -> None:
        async with self.new_session() as session:
            self.session = session
            try:
                while not stop.is_set():
                    try:
                        await self.tick()
                        await self.prune_if_due()
                    except Exception as exc:  # the store away: try again next tick
                        log.warning("webhook delivery tick failed", error=repr(exc))
                    try:
                        await asyncio.wait_for(stop.wait(), self.settings.poll_s)
                    except TimeoutError:
                        pass
            finally:
                try:  # the other workers take over now rather than when the leases expire
                    await self.leases.release_all()
                except Exception as exc:
                    log.warning("webhook leases not released", error=repr(exc))

    async def prune_if_due(self) -> None:
        """Bounds the delivery log (age and count per endpoint), every prune_interval_s."""
        if time.monotonic() - self.pruned_at < self.settings.prune_interval_s:
            return
        self.pruned_at = time.monotonic()
        gone = await Webhooks(self.store).prune(
            self.settings.attempts_keep, int(self.settings.attempts_max_age_s * 1000))
        if gone:
            log.info("webhook attempts pruned", attempts=gone)

    async def tick(self) -> None:
        """One pass: every due endpoint sends what it has not yet received."""
        now = _now_ms()
        tops: dict[str, int] = {}
        async with self.store.read() as conn:
            every = (await conn.execute(select(t.webhook_endpoints))).all()
            if every:  # with no endpoint a poll is this one query: nothing to send or count
                tops = {r.campaign_id: r.max_seq for r in (await conn.execute(
                    select(t.campaigns.c.campaign_id, t.campaigns.c.max_seq))).all()}
        endpoints = [e for e in every if not e.paused]
        oldest = await asyncio.gather(*(self._endpoint(e, tops) for e in endpoints
                                        if e.next_attempt_ms <= now))
        waiting = [ts for ts in oldest if ts is not None]
        WEBHOOK_OLDEST_UNDELIVERED.set(max(0.0, (now - min(waiting)) / 1000) if waiting else 0)
        await self.refresh_backlog(every, tops)

    async def refresh_backlog(self, endpoints: Sequence[Any], tops: dict[str, int]) -> None:
        """Sets the backlog gauge of every endpoint (paused ones too: their backlog grows)
        and drops the series of endpoints removed since the last refresh."""
        cursors: Sequence[Any] = ()
        if endpoints:
            async with self.store.read() as conn:
                cursors = (await conn.execute(select(t.webhook_cursors))).all()
        at: dict[tuple[str, str], int] = {(r.endpoint_id, r.campaign_id): r.seq
                                          for r in cursors}
        seen: set[str] = set()
        for e in endpoints:
            campaigns = [e.campaign_id] if e.campaign_id is not None else list(tops)
            waiting = sum(max(0, tops.get(cid, 0) - at.get((e.endpoint_id, cid), 0))
                          for cid in campaigns)
            WEBHOOK_BACKLOG.labels(e.endpoint_id).set(waiting)
            seen.add(e.endpoint_id)
        for gone in self.backlog_labels - seen:
            try:
                WEBHOOK_BACKLOG.remove(gone)
            except KeyError:
                pass
        self.backlog_labels = seen

    async def _endpoint(self, endpoint: Any, tops: dict[str, int]) -> int | None:
        """Sends `endpoint` its pending events; the ts of the oldest still pending."""
        wanted = set(msgspec.json.decode(endpoint.events))
        campaigns = ([endpoint.campaign_id] if endpoint.campaign_id is not None
                     else sorted(tops))
        async with self.store.read() as conn:
            cursors = {r.campaign_id: r.seq for r in (await conn.execute(
                select(t.webhook_cursors).where(
                    t.webhook_cursors.c.endpoint_id == endpoint.endpoint_id))).all()}
        pending = [cid for cid in campaigns if cursors.get(cid, 0) < tops.get(cid, 0)]
        if not pending or not await self.leases.take(endpoint.endpoint_id):
            return None  # nothing to send, or another worker sends it
        # Read again under the lease: the last holder may have moved them since.
        async with self.store.read() as conn:
            cursors = {r.campaign_id: r.seq for r in (await conn.execute(
                select(t.webhook_cursors).where(
                    t.webhook_cursors.c.endpoint_id == endpoint.endpoint_id))).all()}
        oldest: int | None = None
        try:
            for cid in pending:
                sent, pending_ts = await self._campaign(endpoint, cid, cursors.get(cid, 0),
                                                        wanted)
                if pending_ts is not None:
                    oldest = pending_ts if oldest is None else min(oldest, pending_ts)
                if not sent:
                    break  # failing: the endpoint waits for its backoff
        except LeaseLost:
            log.info("webhook lease lost; another worker sends", endpoint=endpoint.endpoint_id)
        return oldest

    async def _campaign(self, endpoint: Any, cid: str, at: int,
                        wanted: set[str]) -> tuple[bool, int | None]:
        """Sends one campaign's events after seq `at`, in order, stopping at a gap or a
        failure: (no failure, ts of the first event still pending)."""
        async with self.store.read() as conn:
            rows = (await conn.execute(select(t.events).where(
                t.events.c.campaign_id == cid, t.events.c.seq > at)
                .order_by(t.events.c.seq).limit(BATCH))).all()
        skipped: int | None = None  # the last unwanted event passed over, not yet stored
        stored = at  # the cursor as read: a replay that moved it meanwhile wins
        done: list[Delivered] = []  # delivered, not yet recorded (one transaction for all)
        try:
            for row in rows:
                if row.seq != at + 1:
                    return True, None  # a gap: the missing event is not persisted yet
                if ALL in wanted or row.type in wanted:
                    await self.leases.keep(endpoint.endpoint_id, self.settings.lease_margin_ms)
                    attempt = await self._send(endpoint, row)
                    if not attempt.ok:
                        stored = await self._flush(endpoint, done, stored)
                        await self._record(endpoint, row, attempt, stored)
                        return False, row.ts
                    done.append(Delivered(row, attempt, _now_ms()))
                    skipped = None  # the cursor moving to this one covers them
                    if len(done) >= FLUSH_EVERY or _now_ms() - done[0].at_ms > FLUSH_AFTER_MS:
                        stored = await self._flush(endpoint, done, stored)
                else:
                    skipped = row.seq
                at = row.seq
            return True, None
        finally:
            stored = await self._flush(endpoint, done, stored)
            if skipped is not None:
                await self._advance(endpoint.endpoint_id, cid, skipped, stored)

    async def _flush(self, endpoint: Any, done: list["Delivered"], stored: int) -> int:
        """Records the deliveries in `done` and moves the cursor past the last of them,
        in one transaction; the cursor as it now stands. A crash before it means those
        messages are sent again, with the same ids: at least once, never lost."""
        if not done:
            return stored
        last = done[-1].row
        async with self.store.begin() as conn:
            await conn.execute(t.webhook_attempts.insert(), [
                {"endpoint_id": endpoint.endpoint_id,
                 "message_id": f"{d.row.campaign_id}.{d.row.seq}", "ts": d.at_ms,
                 "status": d.attempt.status, "outcome": d.attempt.outcome, "error": None,
                 "event_type": d.row.type, "latency_ms": d.attempt.latency_ms} for d in done])
            await conn.execute(_upsert_cursor(self.store, endpoint.endpoint_id,
                                              last.campaign_id, last.seq, stored))
            if endpoint.failures:
                await conn.execute(t.webhook_endpoints.update().where(
                    t.webhook_endpoints.c.endpoint_id == endpoint.endpoint_id)
                    .values(failures=0, next_attempt_ms=0, last_error=None))
        WEBHOOK_DELIVERIES.labels("delivered").inc(len(done))
        done.clear()
        return int(last.seq)

    async def _send(self, endpoint: Any, row: Any) -> Attempt:
        return await self._post(endpoint, f"{row.campaign_id}.{row.seq}", message(row))

    async def _post(self, endpoint: Any, msg_id: str, body: bytes) -> Attempt:
        """One signed request, timed: its outcome (never raises for the network)."""
        started = time.monotonic()
        attempt = await self._post_untimed(endpoint, msg_id, body)
        return Attempt(attempt.status, attempt.error,
                       int((time.monotonic() - started) * 1000))

    async def _post_untimed(self, endpoint: Any, msg_id: str, body: bytes) -> Attempt:
        assert self.session is not None
        why = self.guard.check_url(endpoint.url)
        if why:
            return Attempt(None, f"refused: {why}")
        keys = [endpoint.secret]
        if endpoint.old_secret and (endpoint.old_secret_until_ms or 0) > _now_ms():
            keys.append(endpoint.old_secret)
        headers = webhook_signing.headers(keys, msg_id, int(time.time()), body)
        try:
            async with self.session.post(endpoint.url, data=body, headers=headers,
                                         allow_redirects=False) as resp:
                answer = await resp.content.read(BODY_READ_LIMIT)
                if 200 <= resp.status < 300:
                    return Attempt(resp.status, None)
                return Attempt(resp.status, f"HTTP {resp.status}: "
                               f"{answer.decode(errors='replace')[:200]}")
        except RefusedAddress as exc:
            return Attempt(None, f"refused: {exc}")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):  # raised by our resolver
                return Attempt(None, f"refused: {exc.os_error}")
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:300])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:300])

    async def _record(self, endpoint: Any, row: Any, attempt: Attempt, stored: int) -> None:
        WEBHOOK_DELIVERIES.labels(attempt.outcome).inc()
        now = _now_ms()
        async with self.store.begin() as conn:
            await conn.execute(t.webhook_attempts.insert().values(
                endpoint_id=endpoint.endpoint_id, message_id=f"{row.campaign_id}.{row.seq}",
                ts=now, status=attempt.status, outcome=attempt.outcome, error=attempt.error,
                event_type=row.type, latency_ms=attempt.latency_ms))
            if attempt.ok:
                await conn.execute(_upsert_cursor(self.store, endpoint.endpoint_id,
                                                  row.campaign_id, row.seq, stored))
                if endpoint.failures:
                    await conn.execute(t.webhook_endpoints.update().where(
                        t.webhook_endpoints.c.endpoint_id == endpoint.endpoint_id)
                        .values(failures=0, next_attempt_ms=0, last_error=None))
                return
            failures = (await conn.execute(select(t.webhook_endpoints.c.failures).where(
                t.webhook_endpoints.c.endpoint_id == endpoint.endpoint_id))).scalar()
            if failures is None:
                return  # deleted meanwhile
            failures += 1
            delay_ms = int(backoff_s(failures, self.settings) * 1000)
            await conn.execute(t.webhook_endpoints.update().where(
                t.webhook_endpoints.c.endpoint_id == endpoint.endpoint_id)
                .values(failures=failures, next_attempt_ms=now + delay_ms,
                        last_error=attempt.error))
        log.info("webhook attempt failed", endpoint=endpoint.endpoint_id,
                 message=f"{row.campaign_id}.{row.seq}", error=attempt.error,
                 failures=failures, retry_in_ms=delay_ms)

    async def _advance(self, endpoint_id: str, cid: str, seq: int, stored: int) -> None:
        async with self.store.begin() as conn:
            await conn.execute(_upsert_cursor(self.store, endpoint_id, cid, seq, stored))


def _upsert_cursor(store: Store, endpoint_id: str, cid: str, seq: int, stored: int) -> Any:
    """The cursor to `seq`, only if it still is at `stored` (not moved back by a replay)."""
    dialect = sqlite if store.is_sqlite else postgresql
    return (dialect.insert(t.webhook_cursors)
            .values(endpoint_id=endpoint_id, campaign_id=cid, seq=seq)
            .on_conflict_do_update(index_elements=["endpoint_id", "campaign_id"],
                                   set_={"seq": seq},
                                   where=t.webhook_cursors.c.seq == stored))


def _now_ms() -> int:
    return int(time.time() * 1000)

