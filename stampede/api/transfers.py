"""Transfer routes: a holder passes a sold claim (its tickets) on with a single-use token."""

import secrets

import msgspec
from aiohttp import web

from stampede.api.context import ENGINE, USER
from stampede.api.errors import decode, json_response, read_body, refuse
from stampede.api.healing import seen_by
from stampede.api.public import CLAIM
from stampede.api.routing import ApiRoutes
from stampede.domain.models import ClaimView
from stampede.domain.transfers import TransferAccept, TransferOffer, TransferResult
from stampede.outcomes import Outcome
from stampede.state import keys

api = ApiRoutes("public")

_accept = msgspec.json.Decoder(TransferAccept)
TICKET = {"ticket_id": r"^[a-z0-9][a-z0-9_-]{0,63}\.[0-9a-f]{20}-[1-9][0-9]{0,3}$"}


@api.route("POST", "/v1/claims/{claim_id}/transfer", "Open a transfer of my sold claim: "
           "a single-use token for its recipient (the claim stays mine until accepted)",
           auth="user", response=TransferOffer, status=201,
           errors=(401, 404, 409, 503), path_params=CLAIM)
async def offer_transfer(request: web.Request) -> web.Response:
    claim_id = request.match_info["claim_id"]
    token = f"{claim_id.split('.', 1)[0]}.{secrets.token_hex(16)}"
    result = await request.app[ENGINE].transfers.offer(claim_id, request[USER].id, token)
    if result.outcome is Outcome.OK and result.offer is not None:
        return json_response(result.offer, status=201)
    return await _refused(request, result, claim_id)


@api.route("POST", "/v1/tickets/{ticket_id}/transfer", "Open a transfer of one of my "
           "tickets alone: a single-use token; the claim keeps its other tickets",
           auth="user", response=TransferOffer, status=201,
           errors=(400, 401, 404, 409, 503), path_params=TICKET)
async def offer_ticket_transfer(request: web.Request) -> web.Response:
    ticket_id = request.match_info["ticket_id"]
    claim_id, unit = keys.claim_of_ticket(ticket_id) or ("", 0)
    if not unit:  # the path pattern admits only ticket ids; a unit past 9999 is none
        return refuse("no_sale_ticket", {"ticket": ticket_id})
    token = f"{claim_id.split('.', 1)[0]}.{secrets.token_hex(16)}"
    result = await request.app[ENGINE].transfers.offer(claim_id, request[USER].id, token,
                                                       unit)
    if result.outcome is Outcome.OK and result.offer is not None:
        return json_response(result.offer, status=201)
    if result.reason in ("no_sale_ticket", "ticket_not_valid"):
        return refuse(result.reason, {"ticket": ticket_id})
    return await _refused(request, result, claim_id)


@api.route("POST", "/v1/transfers/accept", "Accept a transfer: the claim (its tickets) is "
           "re-issued to me under a new id; the giver's tickets stop working",
           auth="user", body=TransferAccept, response=ClaimView,
           errors=(400, 401, 403, 404, 409, 413, 503))
async def accept_transfer(request: web.Request) -> web.Response:
    body = decode(_accept, await read_body(request))
    user = request[USER].id
    engine = request.app[ENGINE]
    result = await engine.transfers.accept(body.transfer_token, user, request[USER].identity)
    if result.outcome is Outcome.OK and result.new_claim_id is not None:
        view = await engine.get_claim(result.new_claim_id, user)
        if view is not None:
            return json_response(view)
    return await _refused(request, result, "", body.transfer_token.split(".", 1)[0])


async def _refused(request: web.Request, result: TransferResult, claim_id: str,
                   campaign: str | None = None) -> web.Response:
    reason = result.reason or result.outcome.reason
    params: dict[str, object] = {"claim": claim_id,
                                 "campaign": campaign or claim_id.split(".", 1)[0],
                                 "user": request[USER].id, **result.params}
    if reason == "transfer_not_sold":
        params["status"] = await request.app[ENGINE].refunds.claim_status(claim_id)
    # the scripts check the campaign first: note what they saw (api.healing)
    return seen_by(refuse(reason, params), result.outcome, str(params["campaign"]))
