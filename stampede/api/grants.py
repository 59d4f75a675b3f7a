"""Ops grant a drop's coupons to a list of users (a segment)."""

import uuid

import msgspec
from aiohttp import web

from stampede.api.context import ADMIN, ENGINE
from stampede.api.errors import decode, json_response, read_body
from stampede.api.idempotency import REPLAYED, checked_key
from stampede.api.routing import CID, ApiRoutes
from stampede.domain.grants import GrantRequest, GrantResults

admin_api = ApiRoutes("admin")

_request = msgspec.json.Decoder(GrantRequest)


@admin_api.route("POST", "/admin/v1/campaigns/{cid}/grants",
                 "Grant one unit of a drop's SKU to each listed user, bypassing the claim "
                 "gates but not the stock or budget; keyed: the same Idempotency-Key grants "
                 "nobody twice", auth="operator", body=GrantRequest, response=GrantResults,
                 idempotent=True, errors=(400, 401, 403, 413, 503), path_params=CID)
async def grant(request: web.Request) -> web.Response:
    body = decode(_request, await read_body(request))
    sent = checked_key(request)
    key = sent or uuid.uuid4().hex
    results = await request.app[ENGINE].grants.grant(
        request.match_info["cid"], body.sku, body.users, f"ops:{key}",
        f"ops:{request[ADMIN].name}")
    if sent is not None and results and all(r.outcome == "already" for r in results):
        request[REPLAYED] = True  # a retry that granted nothing: no second audit row
    return json_response(GrantResults(granted=sum(r.outcome == "granted" for r in results),
                                      results=results))
