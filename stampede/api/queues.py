"""The public waitlist and waiting-room routes: thin calls into the engine.

- `POST|GET|DELETE /v1/campaigns/{cid}/waitlist`: join a sold-out SKU's
  waitlist, see your place or your offer, leave (declining any offer).
- `POST /v1/campaigns/{cid}/queue`, `GET /v1/campaigns/{cid}/queue/me`:
  take a waiting-room ticket, poll it; once admitted it carries the
  admission token that the claim endpoint requires (X-Admission-Token).
"""

from typing import Any

import msgspec
from aiohttp import web

from stampede.api.context import ENGINE, USER
from stampede.api.errors import decode, json_response, read_body, refuse
from stampede.api.headers import header
from stampede.api.healing import seen_by
from stampede.api.routing import CID, SKU_PATTERN, ApiRoutes
from stampede.domain.models import QueueTicket, WaitlistEntry, WaitlistJoin, WaitlistView
from stampede.outcomes import Outcome

api = ApiRoutes("queues")

ADMISSION_HEADER = "X-Admission-Token"
_join_decoder = msgspec.json.Decoder(WaitlistJoin)
_ADMISSION_DOC = {ADMISSION_HEADER: "the admission token of your waiting-room ticket "
                                    "(campaigns with a waiting room only)"}


async def _refusal(request: web.Request, outcome: Outcome, not_found: str,
                   **context: Any) -> web.Response:
    """The refusal behind a waitlist or waiting-room outcome, named (explain.py)."""
    cid = request.match_info["cid"]
    if outcome in _SEEN_FIRST:  # the script checked the campaign before anything else
        return seen_by(refuse(_SEEN_FIRST[outcome], {"campaign": cid}), outcome)
    why = await request.app[ENGINE].explain(cid, outcome, not_found=not_found, **context)
    return seen_by(refuse(why.reason, {"campaign": cid, **context, **why.params}), outcome)


_SEEN_FIRST = {Outcome.CAMPAIGN_MISSING: "campaign_missing", Outcome.FENCED: "fenced"}


@api.route("POST", "/v1/campaigns/{cid}/waitlist",
           "Join a sold-out SKU's waitlist (one entry per SKU; joining again answers it)",
           auth="user", body=WaitlistJoin, response=WaitlistEntry, status=201,
           errors=(400, 401, 403, 404, 409, 413, 503), path_params=CID, headers=_ADMISSION_DOC)
async def join_waitlist(request: web.Request) -> web.Response:
    user = request[USER].id
    body = decode(_join_decoder, await read_body(request))
    outcome, entry, created = await request.app[ENGINE].join_waitlist(
        request.match_info["cid"], user, body.sku, body.qty,
        admission_token=header(request, ADMISSION_HEADER))
    if outcome is not Outcome.OK:
        return await _refusal(request, outcome, "no_waitlist", user=user, sku=body.sku,
                              qty=body.qty)
    return json_response(entry, status=201 if created else 200)


@api.route("GET", "/v1/campaigns/{cid}/waitlist",
           "My waitlist entries: place in line, or the offer to confirm", auth="user",
           response=WaitlistView, errors=(400, 401, 404, 503), path_params=CID,
           query_params={"sku": (SKU_PATTERN, False)})
async def my_waitlist(request: web.Request) -> web.Response:
    user = request[USER].id
    outcome, entries = await request.app[ENGINE].waitlist(request.match_info["cid"], user,
                                                          request.query.get("sku"))
    if outcome is not Outcome.OK:
        return await _refusal(request, outcome, "no_waitlist", kind="any")
    return json_response(WaitlistView(entries=entries))


@api.route("DELETE", "/v1/campaigns/{cid}/waitlist",
           "Leave a SKU's waitlist (an open offer is declined and passes on)", auth="user",
           response=WaitlistEntry, errors=(400, 401, 404, 503), path_params=CID,
           query_params={"sku": (SKU_PATTERN, True)})
async def leave_waitlist(request: web.Request) -> web.Response:
    user = request[USER].id
    outcome, entry = await request.app[ENGINE].leave_waitlist(request.match_info["cid"], user,
                                                              request.query["sku"])
    if outcome is not Outcome.OK:
        return await _refusal(request, outcome, "not_waiting", user=user,
                              sku=request.query["sku"], kind="any")
    return json_response(entry)


@api.route("POST", "/v1/campaigns/{cid}/queue",
           "Take a waiting-room ticket (one per user; taking again answers it)", auth="user",
           response=QueueTicket, status=201, errors=(400, 401, 404, 409, 503), path_params=CID)
async def take_ticket(request: web.Request) -> web.Response:
    user = request[USER].id
    outcome, ticket, created = await request.app[ENGINE].take_ticket(request.match_info["cid"],
                                                                     user)
    if outcome is not Outcome.OK:
        return await _refusal(request, outcome, "no_waiting_room", user=user, kind="any")
    return json_response(ticket, status=201 if created else 200)


@api.route("GET", "/v1/campaigns/{cid}/queue/me",
           "Poll my ticket: place, estimated wait, and once admitted the admission token",
           auth="user", response=QueueTicket, errors=(400, 401, 404, 503), path_params=CID)
async def my_ticket(request: web.Request) -> web.Response:
    user = request[USER].id
    outcome, ticket = await request.app[ENGINE].ticket(request.match_info["cid"], user)
    if outcome is not Outcome.OK:
        return await _refusal(request, outcome, "no_ticket", user=user, kind="any")
    return json_response(ticket)
