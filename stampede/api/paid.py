"""Paid voucher routes: read, pay and refund a paid voucher's hold (the buyer only).

`POST /v1/campaigns/{cid}/coupons` of a paid voucher's SKU answers a hold
(`status: held`, `hold_deadline`); then

    GET  /v1/paid-holds/{claim_id}           the hold, its payment and refund
    POST /v1/paid-holds/{claim_id}/confirm   {"payment": ref}: paid, coupons issued
    POST /v1/paid-holds/{claim_id}/refund    an unused voucher: coupons voided

Another user's claim is 404, as an unknown one. Confirm and refund are
idempotent by the claim (again: the same answer) and by Idempotency-Key (a
retry gets the first response back; the key is kept in the event).
"""

import msgspec
from aiohttp import web

from stampede.api.context import ENGINE, GUARD, USER
from stampede.api.errors import decode, json_response, read_body, refuse_outcome
from stampede.api.healing import seen_by
from stampede.api.idempotency import checked_key
from stampede.api.routing import ApiRoutes
from stampede.domain.coupons.paid import Answer
from stampede.domain.coupons.spec import PaidConfirmRequest, PaidHoldView
from stampede.outcomes import Outcome

api = ApiRoutes("paid-vouchers")

CLAIM = {"claim_id": r"^[a-z0-9][a-z0-9_-]{0,63}\.[0-9a-f]{20}$"}
_confirm = msgspec.json.Decoder(PaidConfirmRequest)


def _answer(claim_id: str, answer: Answer) -> web.Response:
    if answer.view is None:
        reason = "no_claim" if answer.outcome is Outcome.NOT_FOUND else answer.reason or None
        # coupon_pay, coupon_refund and the hold's read check the campaign first
        return seen_by(refuse_outcome(answer.outcome, reason, answer.params, claim=claim_id,
                                      campaign=claim_id.split(".", 1)[0]), answer.outcome)
    return json_response(answer.view)


@api.route("GET", "/v1/paid-holds/{claim_id}", "My paid voucher's hold: its status, payment "
           "and refund", auth="user", response=PaidHoldView, errors=(401, 404, 422, 503),
           path_params=CLAIM)
async def get_paid_hold(request: web.Request) -> web.Response:
    claim_id = request.match_info["claim_id"]
    answer = await request.app[ENGINE].coupons.paid.hold(claim_id, request[USER].id)
    return _answer(claim_id, answer)


@api.route("POST", "/v1/paid-holds/{claim_id}/confirm", "Pay my paid voucher's hold: its "
           "coupons are issued (the same payment again answers the same)", auth="user",
           body=PaidConfirmRequest, response=PaidHoldView, idempotent=True,
           errors=(400, 401, 404, 409, 413, 422, 503), path_params=CLAIM)
async def confirm_paid_hold(request: web.Request) -> web.Response:
    user = request[USER].id
    claim_id = request.match_info["claim_id"]
    body = decode(_confirm, await read_body(request))
    key = checked_key(request)

    async def run() -> web.Response:
        answer = await request.app[ENGINE].coupons.paid.confirm(claim_id, user, body.payment,
                                                               key)
        return _answer(claim_id, answer)

    return await request.app[GUARD].replayable(
        request, user, f"paid-confirm {claim_id} {body.payment}", run)


@api.route("POST", "/v1/paid-holds/{claim_id}/refund", "Refund my unused paid voucher: its "
           "coupons are voided, the price is refunded", auth="user", response=PaidHoldView,
           idempotent=True, errors=(401, 404, 409, 422, 503), path_params=CLAIM)
async def refund_paid_hold(request: web.Request) -> web.Response:
    user = request[USER].id
    claim_id = request.match_info["claim_id"]
    key = checked_key(request)

    async def run() -> web.Response:
        answer = await request.app[ENGINE].coupons.paid.refund(claim_id, user, user, key)
        return _answer(claim_id, answer)

    return await request.app[GUARD].replayable(request, user, f"paid-refund {claim_id}", run)
