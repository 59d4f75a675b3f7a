"""Webhook endpoints on the admin API: register, list, pause, rotate, remove; their
delivery log, a test message, a replay.

Deliveries themselves are the delivery worker's (stampede.durable.delivery);
these routes change what the store says about endpoints (a replay moves cursors
back, and the worker sends again), except the test message, sent from here.
"""

import re
from collections.abc import Awaitable
from typing import TypeVar

import msgspec
import sqlalchemy.exc
from aiohttp import web

from stampede.api.audit import note_before
from stampede.api.context import ENGINE, WEBHOOKS
from stampede.api.errors import ApiError, decode, json_response, read_body, refuse
from stampede.api.routing import CID, ApiRoutes
from stampede.domain.models import to_ms
from stampede.durable.delivery import AddressGuard, Deliverer, DeliverySettings
from stampede.durable.webhooks import (
    MAX_DELIVERIES,
    MAX_URL,
    DeliveryView,
    ReplayRequest,
    ReplayView,
    TestDeliveryView,
    WebhookCreate,
    WebhookPatch,
    Webhooks,
    WebhookView,
    check_events,
)

api = ApiRoutes("webhooks")

WID = {"wid": r"^wh_[0-9a-f]{20}$"}
_create_decoder = msgspec.json.Decoder(WebhookCreate)
_patch_decoder = msgspec.json.Decoder(WebhookPatch)
_replay_decoder = msgspec.json.Decoder(ReplayRequest)
_CID_PATTERN = CID["cid"]
MAX_OLD_SECRET_TTL_S = 7 * 86_400

T = TypeVar("T")


def _registry(request: web.Request) -> Webhooks:
    found = request.app.get(WEBHOOKS)
    if found is None:
        raise ApiError.of("unavailable", detail="no durable store on this listener")
    return found


async def _stored(call: Awaitable[T]) -> T:
    """A store call; the store out of reach is a 503, not a 500."""
    try:
        return await call
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError) as exc:
        raise ApiError.of("unavailable", detail=f"store: {type(exc).__name__}") from exc


def _check_events(events: list[str]) -> None:
    why = check_events(events)
    if why:
        raise ApiError.of("invalid", detail=why)


@api.route("POST", "/admin/v1/webhooks", "Register a webhook endpoint; its signing "
           "secret is in this answer only", auth="operator", body=WebhookCreate,
           response=WebhookView, status=201, errors=(400, 401, 403, 413, 503))
async def create_webhook(request: web.Request) -> web.Response:
    spec = decode(_create_decoder, await read_body(request))
    if len(spec.url) > MAX_URL:
        raise ApiError.of("invalid", detail=f"the URL is longer than {MAX_URL} characters")
    guard = AddressGuard.from_spec(request.app[ENGINE].settings.webhook_allowed_networks)
    why = await guard.check_resolved(spec.url)
    if why:
        return refuse("webhook_url", {"url": spec.url[:200], "detail": why})
    _check_events(spec.events)
    if spec.campaign is not None and not re.fullmatch(_CID_PATTERN, spec.campaign):
        raise ApiError.of("invalid", detail=f"campaign must match {_CID_PATTERN}")
    return json_response(await _stored(_registry(request).create(spec)), status=201)


@api.route("GET", "/admin/v1/webhooks", "Every webhook endpoint (without secrets)",
           auth="viewer", response=list[WebhookView], errors=(401, 503))
async def list_webhooks(request: web.Request) -> web.Response:
    return json_response(await _stored(_registry(request).list()))


@api.route("GET", "/admin/v1/webhooks/{wid}", "One webhook endpoint: status, failures, "
           "last error", auth="viewer", response=WebhookView, errors=(401, 404, 503),
           path_params=WID)
async def get_webhook(request: web.Request) -> web.Response:
    wid = request.match_info["wid"]
    found = await _stored(_registry(request).get(wid))
    if found is None:
        return refuse("no_webhook", {"webhook": wid})
    return json_response(found)


@api.route("PATCH", "/admin/v1/webhooks/{wid}", "Pause or resume, change the events, "
           "rotate the secret (the old one keeps signing for old_secret_ttl_s)",
           auth="operator", body=WebhookPatch, response=WebhookView,
           errors=(400, 401, 403, 404, 413, 503), path_params=WID)
async def patch_webhook(request: web.Request) -> web.Response:
    wid = request.match_info["wid"]
    patch = decode(_patch_decoder, await read_body(request))
    if patch.events is not None:
        _check_events(patch.events)
    if not 0 <= patch.old_secret_ttl_s <= MAX_OLD_SECRET_TTL_S:
        raise ApiError.of("invalid", detail="old_secret_ttl_s must be 0 to "
                                            f"{MAX_OLD_SECRET_TTL_S}")
    note_before(request, await _stored(_registry(request).get(wid)))
    found = await _stored(_registry(request).patch(wid, patch))
    if found is None:
        return refuse("no_webhook", {"webhook": wid})
    return json_response(found)


@api.route("DELETE", "/admin/v1/webhooks/{wid}", "Remove a webhook endpoint and its "
           "progress", auth="operator", status=204, errors=(401, 403, 404, 503),
           path_params=WID)
async def delete_webhook(request: web.Request) -> web.Response:
    wid = request.match_info["wid"]
    note_before(request, await _stored(_registry(request).get(wid)))
    if not await _stored(_registry(request).delete(wid)):
        return refuse("no_webhook", {"webhook": wid})
    return web.Response(status=204)


@api.route("GET", "/admin/v1/webhooks/{wid}/deliveries", "The endpoint's delivery log, "
           f"newest first: the last `limit` attempts (default 100, at most {MAX_DELIVERIES})",
           auth="viewer", response=list[DeliveryView], errors=(400, 401, 404, 503),
           path_params=WID, query_params={"limit": (r"^[0-9]{1,4}$", False)})
async def webhook_deliveries(request: web.Request) -> web.Response:
    wid = request.match_info["wid"]
    limit = int(request.query.get("limit", "100"))
    if not 1 <= limit <= MAX_DELIVERIES:
        raise ApiError.of("invalid", detail=f"limit must be 1 to {MAX_DELIVERIES}")
    registry = _registry(request)
    if await _stored(registry.row(wid)) is None:
        return refuse("no_webhook", {"webhook": wid})
    return json_response(await _stored(registry.deliveries(wid, limit)))


@api.route("POST", "/admin/v1/webhooks/{wid}/test", "Send the endpoint one signed "
           "`webhook.test` message now (even paused or failing; its cursors and failures "
           "stay) and answer how it went", auth="operator", response=TestDeliveryView,
           errors=(401, 403, 404, 503), path_params=WID)
async def test_webhook(request: web.Request) -> web.Response:
    wid = request.match_info["wid"]
    row = await _stored(_registry(request).row(wid))
    if row is None:
        return refuse("no_webhook", {"webhook": wid})
    settings = request.app[ENGINE].settings
    deliverer = Deliverer(_registry(request).store,
                          AddressGuard.from_spec(settings.webhook_allowed_networks),
                          DeliverySettings.from_settings(settings))
    msg_id, attempt = await _stored(deliverer.send_test(row))
    return json_response(TestDeliveryView(
        message_id=msg_id, outcome=attempt.outcome,
        status=attempt.status, error=attempt.error, latency_ms=attempt.latency_ms))


@api.route("POST", "/admin/v1/webhooks/{wid}/replay", "Deliver again (same message ids) "
           "every event at or after `since`: moves the endpoint's cursors back",
           auth="operator", body=ReplayRequest, response=ReplayView,
           errors=(400, 401, 403, 404, 413, 503), path_params=WID)
async def replay_webhook(request: web.Request) -> web.Response:
    wid = request.match_info["wid"]
    spec = decode(_replay_decoder, await read_body(request))
    if spec.since.tzinfo is None:
        raise ApiError.of("invalid", detail="since needs a time zone (e.g. Z or +02:00)")
    moved = await _stored(_registry(request).replay(wid, to_ms(spec.since)))
    if moved is None:
        return refuse("no_webhook", {"webhook": wid})
    return json_response(ReplayView(id=wid, since=spec.since, campaigns=moved))
