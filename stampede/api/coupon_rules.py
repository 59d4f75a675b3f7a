"""Coupon rules routes: which of my coupons fit a cart, and live template changes.

Public (users): `POST /v1/me/coupons/qualify`. Admin:
`PATCH /admin/v1/campaigns/{cid}/coupons`. Cart-aware redemption itself is
`POST /v1/redemptions` (api/coupons.py) with `lines`.
"""

import msgspec
from aiohttp import web

from stampede.api.context import ADMIN, ENGINE, USER
from stampede.api.coupons import refusal
from stampede.api.errors import decode, json_response, read_body
from stampede.api.routing import CID, ApiRoutes
from stampede.domain.coupons.spec import (
    CouponDropPatch,
    CouponDropPatched,
    QualifyRequest,
    QualifyView,
)
from stampede.outcomes import Outcome

api = ApiRoutes("coupon-rules")
admin_api = ApiRoutes("coupon-rules-admin")

_qualify_decoder = msgspec.json.Decoder(QualifyRequest)
_patch_decoder = msgspec.json.Decoder(CouponDropPatch)


@api.route("POST", "/v1/me/coupons/qualify",
           "Which of my active coupons fit this cart: each one's discount, or why not",
           auth="user", body=QualifyRequest, response=QualifyView,
           errors=(400, 401, 413, 503))
async def qualify(request: web.Request) -> web.Response:
    user = request[USER].id
    body = decode(_qualify_decoder, await read_body(request))
    return json_response(await request.app[ENGINE].coupons.qualify(user, body.lines))


@admin_api.route("PATCH", "/admin/v1/campaigns/{cid}/coupons",
                 "Live change of a drop's daily caps and templates (validity only grows; "
                 "docs/coupon-rules.md says what issued coupons keep)", auth="operator",
                 body=CouponDropPatch, response=CouponDropPatched,
                 errors=(400, 401, 403, 404, 413, 503), path_params=CID)
async def patch_drop(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    patch = decode(_patch_decoder, await read_body(request))
    cid = request.match_info["cid"]
    answer = await request.app[ENGINE].coupons.patch_drop(cid, patch, actor=admin.name)
    if answer.outcome is not Outcome.OK:
        return refusal(answer, "no_drop", campaign=cid,
                       template=answer.view if isinstance(answer.view, str) else "?")
    return json_response(answer.view)
