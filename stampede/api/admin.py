"""The admin API under /admin/v1, on its own listener, behind admin tokens."""

import msgspec
from aiohttp import web

from stampede.api.context import ADMIN, ENGINE
from stampede.api.errors import decode, json_response, outcome_error, read_body
from stampede.api.idempotency import checked_key
from stampede.api.routing import CID, SKU, ApiRoutes
from stampede.domain.models import (
    CampaignList,
    CampaignPatch,
    CampaignSpec,
    CampaignStats,
    StockDelta,
    StockLevel,
)
from stampede.outcomes import Outcome

api = ApiRoutes("admin")

_spec_decoder = msgspec.json.Decoder(CampaignSpec)
_patch_decoder = msgspec.json.Decoder(CampaignPatch)
_delta_decoder = msgspec.json.Decoder(StockDelta)


@api.route("GET", "/admin/v1/campaigns", "All campaign ids", auth="viewer",
           response=CampaignList, errors=(401, 503))
async def list_campaigns(request: web.Request) -> web.Response:
    return json_response(CampaignList(campaigns=await request.app[ENGINE].campaign_ids()))


@api.route("PUT", "/admin/v1/campaigns/{cid}",
           "Create a campaign, or replace one that has no claims yet", auth="operator",
           body=CampaignSpec, response=CampaignStats, status=201, also=(200,),
           errors=(400, 401, 403, 409, 413, 503), path_params=CID)
async def put_campaign(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    spec = decode(_spec_decoder, await read_body(request))
    cid = request.match_info["cid"]
    engine = request.app[ENGINE]
    outcome, created = await engine.define_campaign(cid, spec, actor=admin.name)
    if outcome is not Outcome.OK:
        return outcome_error(outcome, "the campaign has claims and cannot be replaced; "
                                      "use PATCH for live changes")
    return json_response(await engine.stats(cid), status=201 if created else 200)


@api.route("PATCH", "/admin/v1/campaigns/{cid}",
           "Live change: state, schedule, limits (for the next request)", auth="operator",
           body=CampaignPatch, response=CampaignStats,
           errors=(400, 401, 403, 404, 409, 413, 503), path_params=CID)
async def patch_campaign(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    patch = decode(_patch_decoder, await read_body(request))
    cid = request.match_info["cid"]
    outcome = await request.app[ENGINE].patch_campaign(cid, patch, actor=admin.name)
    if outcome is Outcome.CONFLICT:
        return outcome_error(outcome, "a closed campaign cannot be reopened")
    if outcome is Outcome.INVALID:
        return outcome_error(outcome, "closes_at must be after opens_at")
    if outcome is not Outcome.OK:
        return outcome_error(outcome, "no such campaign or SKU")
    return json_response(await request.app[ENGINE].stats(cid))


@api.route("POST", "/admin/v1/campaigns/{cid}/skus/{sku}/stock",
           "Add units to a SKU, or remove available ones", auth="operator", body=StockDelta,
           response=StockLevel, idempotent=True, errors=(400, 401, 403, 404, 409, 413, 503),
           path_params={**CID, **SKU})
async def adjust_stock(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    body = decode(_delta_decoder, await read_body(request))
    cid, sku = request.match_info["cid"], request.match_info["sku"]
    outcome, available = await request.app[ENGINE].adjust_stock(
        cid, sku, body.delta, actor=admin.name,
        op_key=checked_key(request))
    if outcome is Outcome.CONFLICT:
        return outcome_error(outcome, "cannot remove more units than are available")
    if outcome is not Outcome.OK:
        return outcome_error(outcome, "no such campaign or SKU")
    return json_response(StockLevel(sku=sku, available=available))


@api.route("GET", "/admin/v1/campaigns/{cid}/stats",
           "Counts per SKU, claims by outcome, waitlist length", auth="viewer",
           response=CampaignStats, errors=(401, 404, 503), path_params=CID)
async def campaign_stats(request: web.Request) -> web.Response:
    stats = await request.app[ENGINE].stats(request.match_info["cid"])
    if stats is None:
        return outcome_error(Outcome.NOT_FOUND, "no such campaign")
    return json_response(stats)
