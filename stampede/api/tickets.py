"""Ticket routes: a holder's tickets, door scanners' check-ins, and ops issuing scanners."""

import functools
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from stampede.api.audit import note_record
from stampede.api.context import ADMIN, ENGINE, GUARD, SCANNER, USER
from stampede.api.errors import decode, json_response, read_body, refuse
from stampede.api.healing import known_to_store, seen
from stampede.api.routing import ApiRoutes
from stampede.domain.tickets import (
    CheckinResults,
    CheckinVerdict,
    Scan,
    ScanBatch,
    ScannerCredentials,
    ScannerSpec,
    TicketList,
)
from stampede.state import keys

api = ApiRoutes("public")
admin_api = ApiRoutes("admin")

SCANNER_ID = {"sid": r"^[a-z0-9][a-z0-9_-]{0,63}$"}
CAMPAIGN_QUERY = {"campaign": (r"^[a-z0-9][a-z0-9_-]{0,63}$", True)}

_scan = msgspec.json.Decoder(Scan)
_batch = msgspec.json.Decoder(ScanBatch)
_scanner_spec = msgspec.json.Decoder(ScannerSpec)


@api.route("GET", "/v1/me/tickets", "My tickets in a ticketed campaign, each with its "
           "rotating code (valid about a minute: fetch again to show it)", auth="user",
           response=TicketList, errors=(400, 401, 404, 503), query_params=CAMPAIGN_QUERY)
async def my_tickets(request: web.Request) -> web.Response:
    cid = request.query["campaign"]
    tickets, campaign = await request.app[ENGINE].tickets.find_mine(cid, request[USER].id)
    if campaign == "fenced":
        return refuse("fenced", {"campaign": cid})
    if tickets is None:  # (a campaign seen missing: api.healing asks the store)
        return seen(refuse("no_tickets", {"campaign": cid}), campaign, cid)
    resp = json_response(TicketList(tickets=tickets))
    resp.headers["Cache-Control"] = "no-store"  # the codes rotate: never reuse an answer
    return resp


def _being_healed(request: web.Request) -> Callable[[str], Awaitable[bool]]:
    """For a scan whose campaign has no state: is it lost and about to be healed?"""
    return functools.partial(known_to_store, request)


@api.route("POST", "/v1/checkins", "Check a scanned ticket code in at this scanner's gate: "
           "the first scan admits; a second says where and when it was checked in",
           auth="scanner", body=Scan, response=CheckinVerdict,
           errors=(400, 401, 413, 503))
async def check_in(request: web.Request) -> web.Response:
    scan = decode(_scan, await read_body(request))
    verdict, = await request.app[ENGINE].tickets.check_in(request[SCANNER], [scan],
                                                          _being_healed(request))
    return json_response(verdict)


@api.route("POST", "/v1/checkins/batch", "Upload scans (an offline scanner's, with their "
           "times): the verdicts come back in order, as if each had been sent alone",
           auth="scanner", body=ScanBatch, response=CheckinResults,
           errors=(400, 401, 413, 503))
async def check_in_batch(request: web.Request) -> web.Response:
    batch = decode(_batch, await read_body(request))
    results = await request.app[ENGINE].tickets.check_in(request[SCANNER], batch.scans,
                                                         _being_healed(request))
    return json_response(CheckinResults(results=results))


@admin_api.route("PUT", "/admin/v1/scanners/{sid}", "Issue a door scanner for a venue's gate "
                 "(or a new token for it): the token is shown once", auth="operator",
                 body=ScannerSpec, response=ScannerCredentials, status=201, idempotent=True,
                 errors=(400, 401, 403, 413, 422, 503), path_params=SCANNER_ID)
async def put_scanner(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    raw = await read_body(request)
    spec = decode(_scanner_spec, raw)
    sid = request.match_info["sid"]
    await note_record(request, keys.SCANNERS, sid)

    async def run() -> web.Response:
        return json_response(await request.app[ENGINE].tickets.put_scanner(sid, spec),
                             status=201)

    # A retried PUT must not issue a second token: the first answer is kept
    # (under "-scanners", a namespace no campaign id can take).
    return await request.app[GUARD].replayable(
        request, admin.name, f"{sid} {raw.decode(errors='replace')}", run, cid="-scanners")


@admin_api.route("DELETE", "/admin/v1/scanners/{sid}",
                 "Revoke a scanner: its token stops working at once", auth="operator",
                 status=204, errors=(401, 403, 404, 503), path_params=SCANNER_ID)
async def delete_scanner(request: web.Request) -> web.Response:
    sid = request.match_info["sid"]
    await note_record(request, keys.SCANNERS, sid)
    if not await request.app[ENGINE].tickets.remove_scanner(sid):
        return refuse("no_scanner", {"scanner": sid})
    return web.Response(status=204)
