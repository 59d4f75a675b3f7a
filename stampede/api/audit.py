"""Every admin route that changes state leaves a row in the audit log.

The router (api/routing.py `enforced`) calls `record` after an admin
operation declared `audit="log"` (the default for every admin route that is
not a GET) answers a success: actor, route, target, before and after. A
route says what it changes from with `note_before` (a webhook endpoint before
its patch, a merchant before its new token); the after is the answer's JSON,
with tokens and secrets masked. Campaign definitions, patches and restocks
are audited by their events instead (`audit="event"`), and a route that
changes nothing declares `audit="none"`; tests/store/test_admin_audit.py
calls every admin route that is not a GET and finds its row, so a new route
cannot be left out.

The row is written after the change (a failed change is no action, nor is a
retry answered from the Idempotency-Key memory: it changed nothing); if the
store is out of reach then, the change stands and the row goes to the error
log whole, so it is not lost.
"""

import time
from typing import Any

import msgspec
import sqlalchemy
from aiohttp import web

from stampede.api.context import ADMIN, DURABLE, ENGINE
from stampede.api.idempotency import REPLAYED
from stampede.durable.admin_audit import AdminAction, record
from stampede.logs import log
from stampede.state import keys

_BEFORE = web.RequestKey("audit_before", object)
_MASKED = ("token", "secret")
"""Fields whose values never reach the log (credentials shown once)."""


def note_before(request: web.Request, before: Any) -> None:
    """What the admin action is about to change, as it is now."""
    request[_BEFORE] = before


async def note_record(request: web.Request, hash_key: str, field: str) -> None:
    """`note_before` of a credential's record (a JSON value in a Redis hash)."""
    raw = await request.app[ENGINE].redis.hget(hash_key, field)
    note_before(request, None if raw is None else msgspec.json.decode(raw))


def masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "(masked)" if any(m in k for m in _MASKED) else masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def _after(response: web.StreamResponse) -> Any:
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes) or not body or response.content_type != "application/json":
        return None
    try:
        return masked(msgspec.json.decode(body))
    except msgspec.DecodeError:
        return None


def _campaign(request: web.Request) -> str:
    cid = request.match_info.get("cid")
    if cid is not None:
        return cid
    return keys.campaign_of_claim(request.match_info.get("claim_id", "")) or ""


async def audited(request: web.Request, route: str, response: web.StreamResponse) -> None:
    """Write the action's row, if it succeeded, was not a replay and a store is configured."""
    store = request.app.get(DURABLE)
    if store is None or not 200 <= response.status < 300 or request.get(REPLAYED, False):
        return
    action = AdminAction(at_ms=int(time.time() * 1000), actor=request[ADMIN].name,
                         action=route, target=request.path, campaign_id=_campaign(request),
                         status=response.status, before=masked(request.get(_BEFORE)),
                         after=_after(response))
    try:
        await record(store, action)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError) as exc:
        log.error("admin action done but its audit row not stored", error=type(exc).__name__,
                  row=msgspec.json.encode(action).decode())
