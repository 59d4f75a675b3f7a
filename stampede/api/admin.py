"""The admin API under /admin/v1, on its own listener, behind admin tokens."""

import msgspec
from aiohttp import web

from stampede.api.context import ADMIN, ENGINE
from stampede.api.errors import decode, json_response, read_body, refuse
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


@api.route("GET", "/admin/v1/campaigns",
           "Every campaign at a glance: state, window, units per SKU, waitlist, claims",
           auth="viewer", response=CampaignList, errors=(401, 503))
async def list_campaigns(request: web.Request) -> web.Response:
    summaries = await request.app[ENGINE].campaign_summaries()
    return json_response(CampaignList(campaigns=summaries))


@api.route("PUT", "/admin/v1/campaigns/{cid}",
           "Create a campaign, or replace one that has no claims yet", auth="operator",
           body=CampaignSpec, response=CampaignStats, status=201, also=(200,),
           errors=(400, 401, 403, 409, 413, 503), path_params=CID,
           audit="event")  # campaign_defined
async def put_campaign(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    spec = decode(_spec_decoder, await read_body(request))
    cid = request.match_info["cid"]
    engine = request.app[ENGINE]
    outcome, created = await engine.define_campaign(cid, spec, actor=admin.name)
    if outcome is not Outcome.OK:
        return refuse("has_claims", {"campaign": cid})
    return json_response(await engine.stats(cid), status=201 if created else 200)


@api.route("PATCH", "/admin/v1/campaigns/{cid}",
           "Live change: state, schedule, limits (for the next request)", auth="operator",
           body=CampaignPatch, response=CampaignStats,
           errors=(400, 401, 403, 404, 409, 413, 503), path_params=CID,
           audit="event")  # campaign_patched
async def patch_campaign(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    patch = decode(_patch_decoder, await read_body(request))
    cid = request.match_info["cid"]
    engine = request.app[ENGINE]
    outcome = await engine.patch_campaign(cid, patch, actor=admin.name)
    if outcome is Outcome.CONFLICT:
        return refuse("reopen_closed", {"campaign": cid})
    if outcome is Outcome.INVALID:
        return refuse("bad_schedule")
    if outcome is not Outcome.OK:
        return refuse(*await _patch_missing(request, cid, patch))
    return json_response(await engine.stats(cid))


async def _patch_missing(request: web.Request, cid: str,
                         patch: CampaignPatch) -> tuple[str, dict[str, str]]:
    """What a PATCH named that does not exist: the campaign, a SKU, the waiting room."""
    engine = request.app[ENGINE]
    skus: list[str | None] = [None]
    if patch.sku_limits is not msgspec.UNSET and patch.sku_limits:
        skus = list(patch.sku_limits)
    if patch.price_steps is not msgspec.UNSET and patch.price_steps:
        skus = [*(s for s in skus if s is not None), *patch.price_steps]
    if patch.allocations is not msgspec.UNSET and patch.allocations:
        skus = [*(s for s in skus if s is not None), *patch.allocations]
    for sku in skus:
        why = await engine.explain(cid, Outcome.NOT_FOUND, sku=sku,
                                   not_found="no_waiting_room", kind="any")
        if why.reason in ("no_campaign", "no_sku"):
            return why.reason, {"campaign": cid, "sku": sku or "?"}
    return "no_waiting_room", {"campaign": cid}


@api.route("POST", "/admin/v1/campaigns/{cid}/skus/{sku}/stock",
           "Add units to a SKU, or remove available ones", auth="operator", body=StockDelta,
           response=StockLevel, idempotent=True, errors=(400, 401, 403, 404, 409, 413, 503),
           path_params={**CID, **SKU}, audit="event")  # stock_adjusted
async def adjust_stock(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    body = decode(_delta_decoder, await read_body(request))
    cid, sku = request.match_info["cid"], request.match_info["sku"]
    outcome, available = await request.app[ENGINE].adjust_stock(
        cid, sku, body.delta, actor=admin.name,
        op_key=checked_key(request))
    if outcome is Outcome.CONFLICT:
        return refuse("not_enough_stock", {"campaign": cid, "sku": sku,
                                           "available": available, "removed": -body.delta})
    if outcome is not Outcome.OK:
        why = await request.app[ENGINE].explain(cid, outcome, sku=sku, kind="any")
        return refuse(why.reason, {"campaign": cid, "sku": sku})
    return json_response(StockLevel(sku=sku, available=available))


@api.route("GET", "/admin/v1/campaigns/{cid}/stats",
           "Counts per SKU, claims by outcome, waitlist length", auth="viewer",
           response=CampaignStats, errors=(401, 404, 503), path_params=CID)
async def campaign_stats(request: web.Request) -> web.Response:
    cid = request.match_info["cid"]
    stats = await request.app[ENGINE].stats(cid)
    if stats is None:
        return refuse("no_campaign", {"campaign": cid})
    return json_response(stats)
