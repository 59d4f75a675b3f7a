"""Webhook endpoints and their progress, kept in the store.

An endpoint names a URL, the event types it wants (or `*`) and optionally one
campaign. How far it has received each campaign's events is a cursor row
(endpoint, campaign) → seq; the delivery worker (stampede.durable.delivery)
moves it only after the endpoint answered 2xx, so progress survives any crash
and nothing is skipped. Every attempt is a row of `webhook_attempts`.
"""

import builtins
import secrets
import time
from datetime import datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from stampede.domain.models import from_ms
from stampede.durable import webhook_signing
from stampede.durable.events import TYPES
from stampede.durable.store import Store
from stampede.durable.store import schema as t

ALL = "*"
EVENT_TYPES = frozenset(TYPES)
FAILING_AFTER = 5
"""Consecutive failures after which an endpoint shows as `failing` (it is still retried)."""
MAX_URL = 2048
MAX_EVENTS = 64


class WebhookCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str
    events: list[str]
    """Event types (docs: the `type` of the events table), or ["*"] for all."""
    campaign: str | None = None
    """Only this campaign's events (None: every campaign)."""


class WebhookPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    paused: bool | None = None
    events: list[str] | None = None
    rotate_secret: bool = False
    """A new secret (answered once); the old one keeps signing beside it for
    old_secret_ttl_s, so receivers can switch without losing a message."""
    old_secret_ttl_s: int = 86_400


class WebhookView(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    url: str
    events: list[str]
    campaign: str | None
    status: Literal["active", "paused", "failing"]
    failures: int
    """Consecutive failed attempts (0 after a delivery)."""
    last_error: str | None
    next_attempt_at: datetime | None
    """While failing: when the next retry is due."""
    created_at: datetime
    old_secret_until: datetime | None = None
    secret: str | None = None
    """Only in the answer that created the endpoint or rotated its secret."""


MAX_DELIVERIES = 500


class DeliveryView(msgspec.Struct, kw_only=True):
    message_id: str
    """`<campaign>.<seq>` (the webhook-id header), or `test.<hex>` for a test message."""
    event_type: str | None
    attempt: int
    """1 for the first attempt at this message, 2 for its first retry, ..."""
    outcome: Literal["delivered", "failed", "error"]
    status: int | None
    """The HTTP status answered; None: no answer (see error)."""
    error: str | None
    latency_ms: int | None
    at: datetime


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    since: datetime
    """ISO 8601 with a time zone: events that happened at or after it (by the event's
    own time, its `timestamp`, not when it was stored or first delivered) are sent again."""


class ReplayView(msgspec.Struct, kw_only=True):
    id: str
    since: datetime
    campaigns: dict[str, int]
    """Campaign -> the seq delivery starts again from (only the cursors moved back)."""


class TestDeliveryView(msgspec.Struct, kw_only=True):
    message_id: str
    outcome: Literal["delivered", "failed", "error"]
    status: int | None
    error: str | None
    latency_ms: int | None


def check_events(events: list[str]) -> str | None:
    """Why `events` is not a valid subscription, or None."""
    if not events or len(events) > MAX_EVENTS:
        return f"events must list 1 to {MAX_EVENTS} event types, or [\"*\"]"
    unknown = sorted(set(events) - EVENT_TYPES - {ALL})
    if unknown:
        return f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}"
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)


def view(row: Any, secret: str | None = None) -> WebhookView:
    status: Literal["active", "paused", "failing"] = (
        "paused" if row.paused else "failing" if row.failures >= FAILING_AFTER else "active")
    until = row.old_secret_until_ms
    return WebhookView(
        id=row.endpoint_id, url=row.url, events=msgspec.json.decode(row.events),
        campaign=row.campaign_id, status=status, failures=row.failures,
        last_error=row.last_error,
        next_attempt_at=from_ms(row.next_attempt_ms) if row.failures else None,
        created_at=from_ms(row.created_ms),
        old_secret_until=from_ms(until) if until and until > _now_ms() else None,
        secret=secret)


class Webhooks:
    """Endpoints and cursors in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, spec: WebhookCreate) -> WebhookView:
        endpoint_id = "wh_" + secrets.token_hex(10)
        secret = webhook_signing.new_secret()
        async with self.store.begin() as conn:
            await conn.execute(t.webhook_endpoints.insert().values(
                endpoint_id=endpoint_id, url=spec.url, events=msgspec.json.encode(
                    spec.events).decode(), campaign_id=spec.campaign, secret=secret,
                paused=0, failures=0, next_attempt_ms=0, created_ms=_now_ms()))
            # From now on: what the store already holds is history, not news.
            stored = select(t.campaigns.c.campaign_id, t.campaigns.c.max_seq)
            if spec.campaign is not None:
                stored = stored.where(t.campaigns.c.campaign_id == spec.campaign)
            rows = (await conn.execute(stored)).all()
            if rows:
                await conn.execute(t.webhook_cursors.insert(), [
                    {"endpoint_id": endpoint_id, "campaign_id": r.campaign_id, "seq": r.max_seq}
                    for r in rows])
        found = await self.get(endpoint_id, secret)
        assert found is not None
        return found

    async def list(self) -> list[WebhookView]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(t.webhook_endpoints)
                                       .order_by(t.webhook_endpoints.c.created_ms))).all()
        return [view(r) for r in rows]

    async def get(self, endpoint_id: str, secret: str | None = None) -> WebhookView | None:
        row = await self.row(endpoint_id)
        return None if row is None else view(row, secret)

    async def row(self, endpoint_id: str) -> Any:
        async with self.store.engine.connect() as conn:
            return (await conn.execute(select(t.webhook_endpoints).where(
                t.webhook_endpoints.c.endpoint_id == endpoint_id))).first()

    async def patch(self, endpoint_id: str, patch: WebhookPatch) -> WebhookView | None:
        values: dict[str, Any] = {}
        if patch.paused is not None:
            values["paused"] = int(patch.paused)
            if not patch.paused:  # resuming: retry at once
                values["next_attempt_ms"] = 0
        if patch.events is not None:
            values["events"] = msgspec.json.encode(patch.events).decode()
        secret = None
        async with self.store.begin() as conn:
            row = (await conn.execute(select(t.webhook_endpoints).where(
                t.webhook_endpoints.c.endpoint_id == endpoint_id))).first()
            if row is None:
                return None
            if patch.rotate_secret:
                secret = webhook_signing.new_secret()
                values.update(secret=secret, old_secret=row.secret,
                              old_secret_until_ms=_now_ms() + patch.old_secret_ttl_s * 1000)
            if values:
                await conn.execute(update(t.webhook_endpoints).where(
                    t.webhook_endpoints.c.endpoint_id == endpoint_id).values(**values))
        return await self.get(endpoint_id, secret)

    async def delete(self, endpoint_id: str) -> bool:
        async with self.store.begin() as conn:
            gone = await conn.execute(delete(t.webhook_endpoints).where(
                t.webhook_endpoints.c.endpoint_id == endpoint_id))
            await conn.execute(delete(t.webhook_cursors).where(
                t.webhook_cursors.c.endpoint_id == endpoint_id))
            await conn.execute(delete(t.webhook_leases).where(
                t.webhook_leases.c.endpoint_id == endpoint_id))
        return bool(gone.rowcount)

    async def deliveries(self, endpoint_id: str, limit: int) -> builtins.list[DeliveryView]:
        """The endpoint's last `limit` attempts, newest first, each numbered among the
        attempts at its message."""
        a = t.webhook_attempts
        attempt = func.row_number().over(partition_by=a.c.message_id,
                                         order_by=a.c.attempt_id).label("attempt")
        numbered = (select(a, attempt).where(a.c.endpoint_id == endpoint_id)
                    .subquery())
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(numbered)
                                       .order_by(numbered.c.attempt_id.desc())
                                       .limit(limit))).all()
        return [DeliveryView(message_id=r.message_id, event_type=r.event_type,
                             attempt=r.attempt, outcome=r.outcome, status=r.status,
                             error=r.error, latency_ms=r.latency_ms, at=from_ms(r.ts))
                for r in rows]

    async def replay(self, endpoint_id: str, since_ms: int) -> dict[str, int] | None:
        """Moves the endpoint's cursors back before the first event at or after
        `since_ms` of each campaign it follows, never forward; None: no endpoint.
        Campaign -> the seq delivery starts again from, for each cursor moved."""
        e, c, ev = t.webhook_endpoints, t.webhook_cursors, t.events
        dialect = sqlite if self.store.is_sqlite else postgresql
        moved: dict[str, int] = {}
        async with self.store.begin() as conn:
            row = (await conn.execute(select(e.c.campaign_id).where(
                e.c.endpoint_id == endpoint_id))).first()
            if row is None:
                return None
            first = select(ev.c.campaign_id, func.min(ev.c.seq).label("seq")).where(
                ev.c.ts >= since_ms)
            if row.campaign_id is not None:
                first = first.where(ev.c.campaign_id == row.campaign_id)
            starts = (await conn.execute(first.group_by(ev.c.campaign_id))).all()
            cursors = {r.campaign_id: r.seq for r in (await conn.execute(
                select(c).where(c.c.endpoint_id == endpoint_id))).all()}
            for start in starts:
                if start.seq > cursors.get(start.campaign_id, 0):
                    continue  # not delivered yet: nothing to send again
                moved[start.campaign_id] = start.seq
                await conn.execute(dialect.insert(c).values(
                    endpoint_id=endpoint_id, campaign_id=start.campaign_id,
                    seq=start.seq - 1).on_conflict_do_update(
                    index_elements=["endpoint_id", "campaign_id"],
                    set_={"seq": start.seq - 1}))
        return moved

    async def prune(self, keep: int, max_age_ms: int) -> int:
        """Drops attempts older than `max_age_ms`, then all but the newest `keep` of each
        endpoint; the number dropped. Idempotent, so any worker may run it at any time."""
        a = t.webhook_attempts
        async with self.store.begin() as conn:
            gone = (await conn.execute(delete(a).where(a.c.ts < _now_ms() - max_age_ms))
                    ).rowcount
            crowded = (await conn.execute(select(a.c.endpoint_id).group_by(a.c.endpoint_id)
                                          .having(func.count() > keep))).scalars().all()
            for endpoint_id in crowded:
                newest_dropped = (await conn.execute(
                    select(a.c.attempt_id).where(a.c.endpoint_id == endpoint_id)
                    .order_by(a.c.attempt_id.desc()).offset(keep).limit(1))).scalar_one()
                gone += (await conn.execute(delete(a).where(
                    a.c.endpoint_id == endpoint_id, a.c.attempt_id <= newest_dropped))
                ).rowcount
        return int(gone)

    async def attempts(self, endpoint_id: str) -> int:
        async with self.store.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).where(
                t.webhook_attempts.c.endpoint_id == endpoint_id))).scalar_one())
