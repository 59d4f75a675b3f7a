"""The admin API under /admin/v1, on its own listener, behind admin tokens."""

import msgspec
from aiohttp import web

from engine.models import CampaignPatch, CampaignSpec, StockDelta
from engine.outcomes import Outcome
from gateway.auth import Role
from gateway.context import AUTH, ENGINE
from gateway.errors import json_response, outcome_error, read_body

routes = web.RouteTableDef()

_spec_decoder = msgspec.json.Decoder(CampaignSpec)
_patch_decoder = msgspec.json.Decoder(CampaignPatch)
_delta_decoder = msgspec.json.Decoder(StockDelta)


@routes.get("/admin/v1/campaigns")
async def list_campaigns(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request, Role.VIEWER)
    return json_response({"campaigns": await request.app[ENGINE].campaign_ids()})


@routes.put("/admin/v1/campaigns/{cid}")
async def put_campaign(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request, Role.OPERATOR)
    spec = _spec_decoder.decode(await read_body(request))
    cid = request.match_info["cid"]
    outcome, created = await request.app[ENGINE].define_campaign(cid, spec)
    if outcome is not Outcome.OK:
        return outcome_error(outcome, "the campaign has claims and cannot be replaced; "
                                      "use PATCH for live changes")
    return json_response(await request.app[ENGINE].stats(cid), status=201 if created else 200)


@routes.patch("/admin/v1/campaigns/{cid}")
async def patch_campaign(request: web.Request) -> web.Response:
    admin = request.app[AUTH].admin(request, Role.OPERATOR)
    patch = _patch_decoder.decode(await read_body(request))
    cid = request.match_info["cid"]
    outcome = await request.app[ENGINE].patch_campaign(cid, patch, actor=admin.name)
    if outcome is Outcome.CONFLICT:
        return outcome_error(outcome, "a closed campaign cannot be reopened")
    if outcome is not Outcome.OK:
        return outcome_error(outcome, "no such campaign or SKU")
    return json_response(await request.app[ENGINE].stats(cid))


@routes.post("/admin/v1/campaigns/{cid}/skus/{sku}/stock")
async def adjust_stock(request: web.Request) -> web.Response:
    admin = request.app[AUTH].admin(request, Role.OPERATOR)
    body = _delta_decoder.decode(await read_body(request))
    cid, sku = request.match_info["cid"], request.match_info["sku"]
    outcome, available = await request.app[ENGINE].adjust_stock(
        cid, sku, body.delta, actor=admin.name,
        op_key=request.headers.get("Idempotency-Key"))
    if outcome is Outcome.CONFLICT:
        return outcome_error(outcome, "cannot remove more units than are available")
    if outcome is not Outcome.OK:
        return outcome_error(outcome, "no such campaign or SKU")
    return json_response({"sku": sku, "available": available})


@routes.get("/admin/v1/campaigns/{cid}/stats")
async def campaign_stats(request: web.Request) -> web.Response:
    request.app[AUTH].admin(request, Role.VIEWER)
    stats = await request.app[ENGINE].stats(request.match_info["cid"])
    if stats is None:
        return outcome_error(Outcome.NOT_FOUND, "no such campaign")
    return json_response(stats)

