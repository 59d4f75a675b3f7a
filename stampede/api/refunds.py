"""Refund routes: an operator's (admin API) and a buyer's own (public API)."""

from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from stampede.api.context import ADMIN, ENGINE, USER
from stampede.api.errors import decode, json_response, read_body, refuse
from stampede.api.healing import seen_by
from stampede.api.idempotency import REPLAYED, checked_key
from stampede.api.public import CLAIM
from stampede.api.routing import ApiRoutes
from stampede.domain.refunds import RefundRequest, RefundResult, RefundView
from stampede.outcomes import Outcome

api = ApiRoutes("public")
admin_api = ApiRoutes("admin")

_request = msgspec.json.Decoder(RefundRequest)
_REASONS = {Outcome.NOT_FOUND: "no_claim", Outcome.FENCED: "fenced",
            Outcome.IDEMPOTENCY_MISMATCH: "idempotency_mismatch"}


@admin_api.route("POST", "/admin/v1/claims/{claim_id}/refund",
                 "Refund a confirmed claim, whole (`{}`) or some units; the campaign's "
                 "policy restocks (waitlist first) or retires them",
                 auth="operator", body=RefundRequest, response=RefundView, idempotent=True,
                 errors=(400, 401, 403, 404, 409, 413, 422, 503), path_params=CLAIM)
async def operator_refund(request: web.Request) -> web.Response:
    return await _refund(request, actor=request[ADMIN].name, buyer=None)


@api.route("POST", "/v1/claims/{claim_id}/refund",
           "Refund my confirmed claim, whole (`{}`) or some units, within the campaign's "
           "refund window", auth="user", body=RefundRequest, response=RefundView,
           idempotent=True, errors=(400, 401, 403, 404, 409, 413, 422, 503),
           path_params=CLAIM)
async def buyer_refund(request: web.Request) -> web.Response:
    user = request[USER].id
    return await _refund(request, actor=user, buyer=user)


async def _refund(request: web.Request, actor: str, buyer: str | None) -> web.Response:
    body = decode(_request, await read_body(request))
    key = checked_key(request)
    claim_id = request.match_info["claim_id"]
    refunds = request.app[ENGINE].refunds
    result = await refunds.refund(claim_id, body, actor, buyer=buyer, op_key=key)
    if result.outcome is Outcome.OK and result.view is not None:
        if result.replayed:
            request[REPLAYED] = True  # (the admin audit log records the first only)
        return json_response(result.view)
    # refund.lua checks the campaign first: note what it saw (api.healing)
    return seen_by(refuse(*await _why(result, claim_id, body, key, refunds.claim_status)),
                   result.outcome)


async def _why(result: RefundResult, claim_id: str, body: RefundRequest, key: str | None,
               status: Callable[[str], Awaitable[str]]) -> tuple[str, dict[str, object]]:
    params: dict[str, object] = {"claim": claim_id, "campaign": claim_id.split(".", 1)[0],
                                 "key": key or "", "qty": body.qty or 0, **result.params}
    reason = result.reason or _REASONS.get(result.outcome, result.outcome.reason)
    if reason == "refund_not_sold":
        params["status"] = await status(claim_id)
    return reason, params
