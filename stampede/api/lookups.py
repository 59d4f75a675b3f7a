"""The query and export API: listings, lookups and reports from the durable store.

Admin (viewer tokens and up): a campaign's claims and events, a user's whole
history, a claim's, coupon's or redemption's record and history, the audit log
of admin actions, merchants with their totals, redemptions and a merchant's
daily settlement. Merchants see their own redemptions and settlement; users
their own claims. The queries are stampede/durable/queries.py; this module
reads parameters and answers.

Every listing takes `cursor` and `limit` (1 to 1000, default 100) and answers
`{"items": [...], "next_cursor": ...}`. Claims, events and redemptions also
export the whole filtered listing with `format=csv|ndjson` (or the matching
Accept header): streamed chunk by chunk as an attachment, in bounded memory.
"""

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import sqlalchemy.exc
from aiohttp import web

from stampede import Engine
from stampede.api.context import DURABLE, ENGINE, MERCHANT, USER
from stampede.api.errors import ApiError, json_response, refuse
from stampede.api.headers import header
from stampede.api.public import CLAIM
from stampede.api.routing import CID, SKU_PATTERN, ApiRoutes
from stampede.domain.models import QueueTicket, to_ms
from stampede.durable import queries as q
from stampede.durable import shard_queries
from stampede.durable.bundle_queries import bundle_record
from stampede.durable.exports import FORMATS, MEDIA_TYPES, Format, encoded
from stampede.durable.store import Store
from stampede.logs import log

admin_api = ApiRoutes("lookups")
api = ApiRoutes("lookups-public")

ID = r"^[a-z0-9][a-z0-9_-]{0,63}\.[0-9a-f]{20}$"
USER_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
T = TypeVar("T")

CURSOR = {"cursor": (r"^[A-Za-z0-9_-]{1,1024}$", False),
          "limit": (r"^([1-9][0-9]{0,2}|1000)$", False)}
TIME = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
        r"(Z|[+ -][0-9]{2}:?[0-9]{2})$")
"""ISO 8601 with its UTC offset ("+" may arrive as a space: form encoding)."""
WINDOW = {"since": (TIME, False), "until": (TIME, False)}
FORMAT = {"format": (r"^(json|csv|ndjson)$", False)}
# Accept (text/csv, application/x-ndjson) also asks for an export; it is not declared
# as a parameter: OpenAPI ignores Accept among header parameters.
EXPORTS = tuple(MEDIA_TYPES.values())
LIST_ERRORS = (400, 401, 403, 503)


# -- parameters -------------------------------------------------------------------

def _store(request: web.Request) -> Store:
    found = request.app.get(DURABLE)
    if found is None:
        raise ApiError.of("no_store")
    return found


async def _stored(call: Awaitable[T]) -> T:
    """A store call; the store out of reach is a 503, a bad parameter a 400."""
    try:
        return await call
    except q.QueryError as exc:
        raise ApiError.of("bad_query", detail=str(exc)) from exc
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, OSError) as exc:
        raise ApiError.of("unavailable", detail=f"store: {type(exc).__name__}") from exc


def _only(request: web.Request, allowed: Iterable[str]) -> None:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise ApiError.of("bad_query", detail=f"unknown query parameter {unknown[0]!r}; "
                                              f"this listing takes {', '.join(sorted(allowed))}")


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    limit = q.DEFAULT_LIMIT if raw is None else int(raw)  # the route's pattern: digits
    if not 1 <= limit <= q.MAX_LIMIT:
        raise ApiError.of("bad_query", detail=f"limit must be 1 to {q.MAX_LIMIT}, not {raw}")
    return limit


def _time(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    # A "+01:00" offset sent unencoded arrives as " 01:00" (form encoding): take it back.
    text = _PLUS_AS_SPACE.sub(r"+\1", raw)
    try:
        when = datetime.fromisoformat(text)
        ms = to_ms(when) if when.tzinfo is not None else None
    except (ValueError, OverflowError):
        ms = None
    if ms is None:
        raise ApiError.of("bad_query", detail=f"{name} must be an ISO 8601 time with its UTC "
                                              f"offset (e.g. 2026-12-01T00:00:00Z), not {raw!r}")
    return ms


_PLUS_AS_SPACE = re.compile(r" ([0-9]{2}:?[0-9]{2})$")


def _window(request: web.Request) -> q.Window:
    since, until = _time(request, "since"), _time(request, "until")
    if since is not None and until is not None and since >= until:
        raise ApiError.of("bad_query", detail="since must be earlier than until")
    return q.Window(since, until)


def _format(request: web.Request) -> Format | None:
    """The export asked for (format, else Accept), or None for a JSON page."""
    asked = request.query.get("format")
    if asked is not None:
        return FORMATS.get(asked)
    accept = header(request, "Accept") or ""
    for fmt, media in MEDIA_TYPES.items():
        if media in accept:
            return fmt
    return None


# -- answers ----------------------------------------------------------------------

Listing = Callable[[str | None, int], Awaitable[Any]]


async def _listing(request: web.Request, fetch: Listing, name: str,
                   row_type: type[msgspec.Struct]) -> web.StreamResponse:
    """A page of the listing as JSON, or the whole of it as an export."""
    fmt = _format(request)
    if fmt is None:
        return json_response(await _stored(fetch(request.query.get("cursor"),
                                                 _limit(request))))
    if "cursor" in request.query or "limit" in request.query:
        raise ApiError.of("bad_query", detail="an export is the whole listing: it takes no "
                                              "cursor or limit")
    return await _export(request, fetch, name, fmt, q.columns_of(row_type))


async def _export(request: web.Request, fetch: Listing, name: str, fmt: Format,
                  columns: tuple[str, ...]) -> web.StreamResponse:
    chunks = encoded(fetch, fmt, columns)
    first = await _stored(anext(chunks))  # a failure before any byte is still an answer
    response = web.StreamResponse(headers={
        "Content-Type": f"{MEDIA_TYPES[fmt]}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}.{fmt}"',
        "Cache-Control": "no-store"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    except Exception as exc:  # headers are sent: cut the transfer short, never end it clean
        log.warning("export cut short", export=name, error=repr(exc))
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


# -- admin: campaigns --------------------------------------------------------------

CLAIM_QUERY = {"user": (USER_PATTERN, False), "sku": (SKU_PATTERN, False),
               "status": (r"^(held|confirmed|expired|cancelled)$", False),
               **WINDOW, **CURSOR, **FORMAT}


@admin_api.route("GET", "/admin/v1/campaigns/{cid}/claims",
                 "A campaign's claims by user, SKU, status and time (creation order); "
                 "format=csv|ndjson exports them all", auth="viewer", response=q.ClaimPage,
                 errors=LIST_ERRORS, path_params=CID, query_params=CLAIM_QUERY,
                 exports=EXPORTS)
async def campaign_claims(request: web.Request) -> web.StreamResponse:
    _only(request, CLAIM_QUERY)
    cid = request.match_info["cid"]
    where = q.ClaimFilter(campaign=cid, user=request.query.get("user"),
                          sku=request.query.get("sku"), status=request.query.get("status"),
                          window=_window(request))
    store = _store(request)

    async def fetch(cursor: str | None, limit: int) -> q.ClaimPage:
        return await q.claims(store, where, cursor, limit)

    return await _listing(request, fetch, f"claims-{cid}", q.ClaimRow)


EVENT_QUERY = {"type": (r"^[a-z_]{1,32}(,[a-z_]{1,32}){0,31}$", False),
               **WINDOW, **CURSOR, **FORMAT}


@admin_api.route("GET", "/admin/v1/campaigns/{cid}/events",
                 "A campaign's events by type (comma-separated) and time, in order; "
                 "format=csv|ndjson exports them all", auth="viewer", response=q.EventPage,
                 errors=LIST_ERRORS, path_params=CID, query_params=EVENT_QUERY,
                 exports=EXPORTS)
async def campaign_events(request: web.Request) -> web.StreamResponse:
    _only(request, EVENT_QUERY)
    cid = request.match_info["cid"]
    types = tuple(request.query["type"].split(",")) if "type" in request.query else ()
    window = _window(request)
    store = _store(request)

    ids = await _stored(shard_queries.shard_ids(store, cid))

    async def fetch(cursor: str | None, limit: int) -> q.EventPage:
        if len(ids) > 1:  # a sharded campaign: every shard's, in time order
            return await shard_queries.campaign_events(store, ids, types, window, cursor,
                                                       limit)
        return await q.campaign_events(store, cid, types, window, cursor, limit)

    return await _listing(request, fetch, f"events-{cid}", q.EventRow)


# -- admin: lookups ----------------------------------------------------------------

class UserLookup(q.UserHistory, kw_only=True):
    queue_tickets: list[QueueTicket] = []
    """Waiting-room tickets, live from Redis (admission tokens withheld: a viewer
    must not be able to claim as the user)."""


@admin_api.route("GET", "/admin/v1/users/{user}",
                 "A user's whole history: claims, waitlist entries, coupons, redemptions "
                 "and events, newest first (at most limit of each), and waiting-room tickets",
                 auth="viewer", response=UserLookup, errors=LIST_ERRORS,
                 path_params={"user": USER_PATTERN},
                 query_params={"limit": CURSOR["limit"]})
async def user_history(request: web.Request) -> web.Response:
    _only(request, ("limit",))
    uid = request.match_info["user"]
    history = await _stored(q.user_history(_store(request), uid, _limit(request)))
    tickets = await _tickets(request.app[ENGINE], uid)
    return json_response(UserLookup(**msgspec.structs.asdict(history), queue_tickets=tickets))


_TICKET_BATCH = 32


async def _tickets(engine: Engine, uid: str) -> list[QueueTicket]:
    """The user's ticket in every campaign with a waiting room: one script call each."""
    found = []
    ids = await engine.campaign_ids()
    for start in range(0, len(ids), _TICKET_BATCH):
        polled = await asyncio.gather(*(engine.ticket(cid, uid)
                                        for cid in ids[start:start + _TICKET_BATCH]))
        found += [msgspec.structs.replace(view, admission_token=None, token_expires_at=None)
                  for _, view in polled if view is not None]
    return found


@admin_api.route("GET", "/admin/v1/claims/{claim_id}",
                 "A claim's record (a bundle's with its lines) and the events that made it",
                 auth="viewer",
                 response=q.ClaimLookup, errors=(401, 404, 503),
                 path_params=CLAIM)
async def claim_lookup(request: web.Request) -> web.Response:
    claim_id = request.match_info["claim_id"]
    found = await _stored(q.claim_record(_store(request), claim_id))
    if found is None:  # presales: a bundle claim's id names its lines
        found = await _stored(bundle_record(_store(request), claim_id))
    if found is None:
        return refuse("no_claim_record", {"claim": claim_id})
    return json_response(found)


@admin_api.route("GET", "/admin/v1/coupons/{coupon_id}",
                 "A coupon's record and the events that made it", auth="viewer",
                 response=q.CouponLookup, errors=(401, 404, 503),
                 path_params={"coupon_id": ID})
async def coupon_lookup(request: web.Request) -> web.Response:
    coupon_id = request.match_info["coupon_id"]
    found = await _stored(q.coupon_record(_store(request), coupon_id))
    if found is None:
        return refuse("no_coupon_record", {"coupon": coupon_id})
    return json_response(found)


@admin_api.route("GET", "/admin/v1/redemptions/{redemption_id}",
                 "A redemption's record and the events that made it", auth="viewer",
                 response=q.RedemptionLookup, errors=(401, 404, 503),
                 path_params={"redemption_id": ID})
async def redemption_lookup(request: web.Request) -> web.Response:
    redemption_id = request.match_info["redemption_id"]
    found = await _stored(q.redemption_record(_store(request), redemption_id))
    if found is None:
        return refuse("no_redemption_record", {"redemption": redemption_id})
    return json_response(found)


AUDIT_QUERY = {"campaign": (NAME, False), "actor": (r"^[A-Za-z0-9_.:@-]{1,64}$", False),
               "since": WINDOW["since"], "until": WINDOW["until"], **CURSOR}


@admin_api.route("GET", "/admin/v1/audit-log",
                 "Admin actions, oldest first: who defined, patched (state, schedule, "
                 "limits) or restocked what, and every other admin change (webhooks, "
                 "credentials, codes, segments, grants, refunds), with before and after",
                 auth="viewer",
                 response=q.AuditPage, errors=LIST_ERRORS, query_params=AUDIT_QUERY)
async def audit_log(request: web.Request) -> web.Response:
    _only(request, AUDIT_QUERY)
    page = q.audit_log(_store(request), request.query.get("campaign"),
                       request.query.get("actor"), _window(request),
                       request.query.get("cursor"), _limit(request))
    return json_response(await _stored(page))


# -- admin: merchants and redemptions -----------------------------------------------

@admin_api.route("GET", "/admin/v1/merchants",
                 "Merchants with redemptions, and their totals", auth="viewer",
                 response=q.MerchantPage, errors=LIST_ERRORS, query_params=CURSOR)
async def merchants(request: web.Request) -> web.Response:
    _only(request, CURSOR)
    page = q.merchants(_store(request), request.query.get("cursor"), _limit(request))
    return json_response(await _stored(page))


REDEMPTION_QUERY = {"merchant": (NAME, False), "drop": (NAME, False),
                    **WINDOW, **CURSOR, **FORMAT}


async def _redemptions(request: web.Request, merchant: str | None) -> web.StreamResponse:
    allowed = REDEMPTION_QUERY if merchant is None else MERCHANT_REDEMPTION_QUERY
    _only(request, allowed)
    where = q.RedemptionFilter(merchant=merchant or request.query.get("merchant"),
                               drop=request.query.get("drop"), window=_window(request))
    store = _store(request)

    async def fetch(cursor: str | None, limit: int) -> q.RedemptionPage:
        return await q.redemptions(store, where, cursor, limit)

    return await _listing(request, fetch, f"redemptions-{where.merchant or 'all'}",
                          q.RedemptionRow)


@admin_api.route("GET", "/admin/v1/redemptions",
                 "Redemptions by merchant, drop and time, oldest first; format=csv|ndjson "
                 "exports them all", auth="viewer", response=q.RedemptionPage,
                 errors=LIST_ERRORS, query_params=REDEMPTION_QUERY, exports=EXPORTS)
async def redemptions(request: web.Request) -> web.StreamResponse:
    return await _redemptions(request, None)


SETTLEMENT_QUERY = {"since": (WINDOW["since"][0], True), "until": (WINDOW["until"][0], True)}


async def _settlement(request: web.Request, merchant: str) -> web.Response:
    _only(request, SETTLEMENT_QUERY)
    report = q.settlement(_store(request), merchant, _window(request))
    return json_response(await _stored(report))


@admin_api.route("GET", "/admin/v1/merchants/{merchant}/settlement",
                 "A merchant's settlement per UTC day: redemptions, face value discounted, "
                 "order amounts", auth="viewer", response=q.Settlement, errors=LIST_ERRORS,
                 path_params={"merchant": NAME}, query_params=SETTLEMENT_QUERY)
async def merchant_settlement(request: web.Request) -> web.Response:
    return await _settlement(request, request.match_info["merchant"])


# -- merchants: their own only -----------------------------------------------------

MERCHANT_REDEMPTION_QUERY = {"drop": (NAME, False), **WINDOW, **CURSOR, **FORMAT}


@api.route("GET", "/v1/merchant/redemptions",
           "My redemptions (merchant token), oldest first; format=csv|ndjson exports them all",
           auth="merchant", response=q.RedemptionPage, errors=LIST_ERRORS,
           query_params=MERCHANT_REDEMPTION_QUERY, exports=EXPORTS)
async def my_redemptions(request: web.Request) -> web.StreamResponse:
    return await _redemptions(request, request[MERCHANT].merchant_id)


@api.route("GET", "/v1/merchant/settlement",
           "My settlement per UTC day (merchant token)", auth="merchant",
           response=q.Settlement, errors=LIST_ERRORS, query_params=SETTLEMENT_QUERY)
async def my_settlement(request: web.Request) -> web.Response:
    return await _settlement(request, request[MERCHANT].merchant_id)


# -- users: their own only ----------------------------------------------------------

@api.route("GET", "/v1/me/claims", "My claims across campaigns, newest first", auth="user",
           response=q.ClaimPage, errors=(400, 401, 503), query_params=CURSOR)
async def my_claims(request: web.Request) -> web.Response:
    _only(request, CURSOR)
    page = q.claims(_store(request), q.ClaimFilter(user=request[USER].id),
                    request.query.get("cursor"), _limit(request), newest_first=True)
    return json_response(await _stored(page))
