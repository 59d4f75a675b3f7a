"""The public API under /v1: campaign status and the claim lifecycle."""

import msgspec
from aiohttp import web

from engine.models import ClaimRequest
from engine.outcomes import Outcome
from gateway.context import AUTH, ENGINE
from gateway.errors import json_response, outcome_error, read_body

routes = web.RouteTableDef()

_claim_decoder = msgspec.json.Decoder(ClaimRequest)


@routes.get("/v1/campaigns/{cid}")
async def campaign_status(request: web.Request) -> web.Response:
    status = await request.app[ENGINE].public_status(request.match_info["cid"])
    if status is None:
        return outcome_error(Outcome.NOT_FOUND, "no such campaign")
    return json_response(status)


@routes.post("/v1/campaigns/{cid}/claims")
async def create_claim(request: web.Request) -> web.Response:
    user = request.app[AUTH].user(request)
    body = _claim_decoder.decode(await read_body(request))
    result = await request.app[ENGINE].claim(
        request.match_info["cid"], user, body.sku, body.qty,
        idempotency_key=request.headers.get("Idempotency-Key"))
    if result.outcome is not Outcome.OK:
        return outcome_error(result.outcome)
    return json_response(result.claim, status=201)


@routes.get("/v1/claims/{claim_id}")
async def get_claim(request: web.Request) -> web.Response:
    user = request.app[AUTH].user(request)
    claim = await request.app[ENGINE].get_claim(request.match_info["claim_id"], user)
    if claim is None:
        return outcome_error(Outcome.NOT_FOUND, "no such claim")
    return json_response(claim)


@routes.post("/v1/claims/{claim_id}/confirm")
async def confirm_claim(request: web.Request) -> web.Response:
    user = request.app[AUTH].user(request)
    result = await request.app[ENGINE].confirm(request.match_info["claim_id"], user)
    if result.outcome is not Outcome.OK:
        return outcome_error(result.outcome)
    return json_response(result.claim)


@routes.post("/v1/claims/{claim_id}/cancel")
async def cancel_claim(request: web.Request) -> web.Response:
    user = request.app[AUTH].user(request)
    result = await request.app[ENGINE].cancel(request.match_info["claim_id"], user)
    if result.outcome is not Outcome.OK:
        return outcome_error(result.outcome)
    return json_response(result.claim)

