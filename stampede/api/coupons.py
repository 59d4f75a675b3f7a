"""Coupon routes: claim into a wallet, show codes, gift; merchants redeem and roll back.

Public (users): `POST /v1/campaigns/{cid}/coupons`, `POST /v1/campaigns/{cid}/code-claims`
(a promo or referral code), `POST /v1/campaigns/{cid}/referral-code`, `GET /v1/me/coupons`,
`GET /v1/coupons/{id}`, `GET /v1/coupons/{id}/code`, `POST /v1/coupons/{id}/gift`,
`POST /v1/gifts/accept`. Public (merchant tokens): `POST /v1/redemptions`,
`GET /v1/redemptions/{id}`, `POST /v1/redemptions/{id}/rollback`.
Admin: `PUT /admin/v1/merchants/{mid}`, `GET /admin/v1/campaigns/{cid}/coupons/stats`.

A refusal's reason (from the engine) picks its entry of REFUSALS (stampede/outcomes.py):
status, stable code and message.
"""

from typing import Any

import msgspec
from aiohttp import web

from stampede.api.audit import note_record
from stampede.api.context import ADMIN, ENGINE, GUARD, MERCHANT, USER
from stampede.api.errors import ApiError, decode, json_response, read_body, refuse, refuse_outcome
from stampede.api.guard import HEADERS as GUARD_HEADERS
from stampede.api.guard import client_signals, guard_answer
from stampede.api.headers import header
from stampede.api.idempotency import checked_key
from stampede.api.routing import CID, ApiRoutes
from stampede.domain.coupons.pricing import order_total
from stampede.domain.coupons.service import Answer
from stampede.domain.coupons.spec import (
    CodeClaimRequest,
    CouponClaimRequest,
    CouponClaimView,
    CouponStats,
    CouponView,
    GiftAccept,
    GiftOffer,
    MerchantCredentials,
    MerchantSpec,
    RedemptionRequest,
    RedemptionView,
    ReferralCodeView,
    RotatingCode,
    Wallet,
)
from stampede.domain.models import from_ms
from stampede.metrics import count_coupon_op
from stampede.outcomes import GUARD_REFUSALS, REFUSALS, Outcome
from stampede.state import keys

api = ApiRoutes("coupons")
admin_api = ApiRoutes("coupons-admin")

ID = r"^[a-z0-9][a-z0-9_-]{0,63}(:s[1-9][0-9]?(p[0-9]{1,6})?)?\.[0-9a-f]{20}$"
"""A coupon or redemption id: its campaign, a shard suffix on a sharded drop, 80 bits."""
COUPON = {"coupon_id": ID}
REDEMPTION = {"redemption_id": ID}
MERCHANT_ID = {"mid": r"^[a-z0-9][a-z0-9_-]{0,63}$"}
STATUS = r"^(active|used|expired|transferred)$"

def _count(op: str, answer: Answer) -> None:
    if answer.outcome in GUARD_REFUSALS:  # the guard's scope is in stampede_refusals_total
        count_coupon_op(op, answer.outcome.code)
        return
    if answer.outcome is Outcome.OK:  # a replay (the same redemption again) counts once
        count_coupon_op(op, "replayed" if answer.reason == "replayed" else "ok")
        return
    label = answer.reason or answer.outcome.code
    count_coupon_op(op, label if label in REFUSALS or label == answer.outcome.code
                    else "other")


_claim_decoder = msgspec.json.Decoder(CouponClaimRequest)
_code_claim_decoder = msgspec.json.Decoder(CodeClaimRequest)
_redeem_decoder = msgspec.json.Decoder(RedemptionRequest)
_accept_decoder = msgspec.json.Decoder(GiftAccept)
_merchant_decoder = msgspec.json.Decoder(MerchantSpec)


def refusal(answer: Answer, not_found: str = "not_found", **context: Any) -> web.Response:
    """A coupon refusal: its reason's, else `not_found` for NOT_FOUND, else the outcome's."""
    reason = answer.reason
    if not reason and answer.outcome is Outcome.NOT_FOUND:
        reason = not_found
    return refuse_outcome(answer.outcome, reason, answer.params, **context)


# -- users --------------------------------------------------------------------

@api.route("POST", "/v1/campaigns/{cid}/coupons",
           "Claim a coupon (or a gift pack) of a drop, or one priced in points (with an "
           "Idempotency-Key): final at once", auth="user",
           body=CouponClaimRequest, response=CouponClaimView, status=201, idempotent=True,
           errors=(400, 401, 403, 404, 409, 413, 422, 429, 503), path_params=CID,
           headers={"X-Admission-Token": "required when the drop has a waiting room",
                    **GUARD_HEADERS})
async def claim_coupon(request: web.Request) -> web.Response:
    body = decode(_claim_decoder, await read_body(request))
    return await _claim(request, "claim", body.sku, body.qty, None)


@api.route("POST", "/v1/campaigns/{cid}/code-claims",
           "Claim with a promo code or a member's referral code: the code decides the SKU",
           auth="user", body=CodeClaimRequest, response=CouponClaimView, status=201,
           idempotent=True, errors=(400, 401, 403, 404, 409, 413, 422, 429, 503),
           path_params=CID, headers={"X-Admission-Token": "required when the drop has a "
                                                          "waiting room", **GUARD_HEADERS})
async def claim_with_code(request: web.Request) -> web.Response:
    body = decode(_code_claim_decoder, await read_body(request))
    return await _claim(request, "code_claim", "", body.qty, body.code)


async def _claim(request: web.Request, op: str, sku: str, qty: int,
                 code: str | None) -> web.Response:
    user = request[USER]
    key = checked_key(request)
    signals = client_signals(request)
    cid = request.match_info["cid"]
    async with request.app[GUARD].in_flight(user.id, key):
        answer = await request.app[ENGINE].coupons.claim(
            cid, user.id, sku, qty, idempotency_key=key,
            admission_token=header(request, "X-Admission-Token"),
            identity=user.identity, client=signals, code=code)
    _count(op, answer)
    refused = guard_answer(answer)
    if refused is not None:
        return refused
    if answer.outcome is not Outcome.OK:
        return refusal(answer, campaign=cid, sku=sku, user=user.id, qty=qty, key=key)
    return json_response(answer.view, status=201)


@api.route("POST", "/v1/campaigns/{cid}/referral-code",
           "My personal referral code of a drop (minted on the first request, then the same)",
           auth="user", response=ReferralCodeView, status=200,
           errors=(401, 403, 404, 503), path_params=CID)
async def referral_code(request: web.Request) -> web.Response:
    user = request[USER]
    cid = request.match_info["cid"]
    answer = await request.app[ENGINE].coupons.referral_code(cid, user.id, user.identity)
    _count("referral_code", answer)
    if answer.outcome is not Outcome.OK:
        return refusal(answer, campaign=cid, user=user.id)
    return json_response(answer.view)


@api.route("GET", "/v1/me/coupons", "My coupons, optionally by status", auth="user",
           response=Wallet, errors=(400, 401, 503), query_params={"status": (STATUS, False)})
async def my_coupons(request: web.Request) -> web.Response:
    user = request[USER].id
    status = request.query.get("status")
    if set(request.query) - {"status"}:
        raise ApiError.of("invalid", detail="the only query parameter is status")
    return json_response(Wallet(coupons=await request.app[ENGINE].coupons.wallet(user, status)))


@api.route("GET", "/v1/coupons/{coupon_id}", "One of my coupons (with its code while active)",
           auth="user", response=CouponView, errors=(401, 404, 503), path_params=COUPON)
async def get_coupon(request: web.Request) -> web.Response:
    user = request[USER].id
    coupon_id = request.match_info["coupon_id"]
    view = await request.app[ENGINE].coupons.coupon(coupon_id, user)
    if view is None:
        return refuse("no_coupon", {"coupon": coupon_id})
    return json_response(view)


@api.route("GET", "/v1/coupons/{coupon_id}/code",
           "A rotating code to show at a till (stops working within a minute)", auth="user",
           response=RotatingCode, errors=(401, 404, 409, 503), path_params=COUPON)
async def rotating_code(request: web.Request) -> web.Response:
    user = request[USER].id
    coupon_id = request.match_info["coupon_id"]
    answer = await request.app[ENGINE].coupons.rotating_code(coupon_id, user)
    if answer.outcome is not Outcome.OK:
        return refusal(answer, "no_coupon", coupon=coupon_id)
    return json_response(answer.view)


@api.route("POST", "/v1/coupons/{coupon_id}/gift",
           "Offer a transferable coupon as a gift: a single-use, expiring transfer token",
           auth="user", response=GiftOffer, status=201, idempotent=True,
           errors=(401, 404, 409, 422, 503), path_params=COUPON)
async def offer_gift(request: web.Request) -> web.Response:
    user = request[USER].id
    coupon_id = request.match_info["coupon_id"]

    async def run() -> web.Response:
        answer = await request.app[ENGINE].coupons.offer_gift(coupon_id, user)
        _count("gift_offer", answer)
        if answer.outcome is not Outcome.OK:
            return refusal(answer, "no_coupon", coupon=coupon_id)
        return json_response(answer.view, status=201)

    return await request.app[GUARD].replayable(request, user, f"gift {coupon_id}", run,
                                               cid=keys.campaign_of_claim(coupon_id))


@api.route("POST", "/v1/gifts/accept", "Accept a gift: the coupon moves to my wallet",
           auth="user", body=GiftAccept, response=CouponView, idempotent=True,
           errors=(400, 401, 404, 409, 413, 422, 503))
async def accept_gift(request: web.Request) -> web.Response:
    user = request[USER].id
    body = decode(_accept_decoder, await read_body(request))

    async def run() -> web.Response:
        answer = await request.app[ENGINE].coupons.accept_gift(body.transfer_token, user)
        _count("gift_accept", answer)
        if answer.outcome is not Outcome.OK:
            return refusal(answer, "no_gift", user=user)
        return json_response(answer.view)

    return await request.app[GUARD].replayable(
        request, user, f"accept {body.transfer_token}", run,
        cid=body.transfer_token.split(".", 1)[0])


# -- merchants ----------------------------------------------------------------

@api.route("POST", "/v1/redemptions",
           "Redeem a coupon code for an order (idempotent per merchant and order id)",
           auth="merchant", body=RedemptionRequest, response=RedemptionView, status=201,
           idempotent=True, errors=(400, 401, 403, 404, 409, 413, 422, 503))
async def redeem(request: web.Request) -> web.Response:
    merchant = request[MERCHANT]
    raw = await read_body(request)
    body = decode(_redeem_decoder, raw)
    coupons = request.app[ENGINE].coupons

    async def run() -> web.Response:
        answer = await coupons.redeem(merchant, body)
        _count("redeem", answer)
        if answer.outcome is not Outcome.OK:
            next_ms = answer.params.get("next_ms")
            return refusal(answer, "bad_code", merchant=merchant.merchant_id,
                           amount=order_total(body),
                           usable_at=from_ms(next_ms).isoformat() if next_ms else "never")
        return json_response(answer.view, status=201)

    # Redemption is idempotent per merchant and order inside its script; the
    # Idempotency-Key memory adds the 422 for a key reused on another request.
    return await request.app[GUARD].replayable(
        request, f"merchant:{merchant.merchant_id}", raw.decode(errors="replace"), run,
        cid=await coupons.drop_of_code(body.code))


@api.route("GET", "/v1/redemptions/{redemption_id}", "One of my redemptions",
           auth="merchant", response=RedemptionView, errors=(401, 404, 503),
           path_params=REDEMPTION)
async def get_redemption(request: web.Request) -> web.Response:
    merchant = request[MERCHANT]
    rid = request.match_info["redemption_id"]
    view = await request.app[ENGINE].coupons.redemption(rid, merchant.merchant_id)
    if view is None:
        return refuse("no_redemption", {"redemption": rid, "merchant": merchant.merchant_id})
    return json_response(view)


@api.route("POST", "/v1/redemptions/{redemption_id}/rollback",
           "Roll a redemption back (a refund): the use and the caps return, once",
           auth="merchant", response=RedemptionView, idempotent=True,
           errors=(401, 404, 422, 503), path_params=REDEMPTION)
async def rollback(request: web.Request) -> web.Response:
    merchant = request[MERCHANT]
    rid = request.match_info["redemption_id"]

    async def run() -> web.Response:
        answer = await request.app[ENGINE].coupons.rollback(rid, merchant.merchant_id)
        _count("rollback", answer)
        if answer.outcome is not Outcome.OK:
            return refusal(answer, "no_redemption", redemption=rid,
                           merchant=merchant.merchant_id)
        return json_response(answer.view)

    return await request.app[GUARD].replayable(request, f"merchant:{merchant.merchant_id}",
                                               f"rollback {rid}", run,
                                               cid=keys.campaign_of_claim(rid))


# -- admin --------------------------------------------------------------------

@admin_api.route("PUT", "/admin/v1/merchants/{mid}",
                 "Register a merchant (or issue it a new token): the token is shown once",
                 auth="operator", body=MerchantSpec, response=MerchantCredentials, status=201,
                 idempotent=True, errors=(400, 401, 403, 413, 422, 503), path_params=MERCHANT_ID)
async def put_merchant(request: web.Request) -> web.Response:
    admin = request[ADMIN]
    raw = await read_body(request)
    spec = decode(_merchant_decoder, raw)
    mid = request.match_info["mid"]
    await note_record(request, keys.MERCHANTS, mid)

    async def run() -> web.Response:
        creds = await request.app[ENGINE].coupons.put_merchant(mid, spec)
        return json_response(creds, status=201)

    # A retried PUT must not issue a second token: the first answer is kept
    # (under "-merchants", a namespace no campaign id can take).
    return await request.app[GUARD].replayable(
        request, admin.name, f"{mid} {raw.decode(errors='replace')}", run, cid="-merchants")


@admin_api.route("DELETE", "/admin/v1/merchants/{mid}",
                 "Revoke a merchant: its token stops working at once", auth="operator",
                 status=204, errors=(401, 403, 404, 503), path_params=MERCHANT_ID)
async def delete_merchant(request: web.Request) -> web.Response:
    mid = request.match_info["mid"]
    await note_record(request, keys.MERCHANTS, mid)
    if not await request.app[ENGINE].coupons.remove_merchant(mid):
        return refuse("no_merchant", {"merchant": mid})
    return web.Response(status=204)


@admin_api.route("GET", "/admin/v1/campaigns/{cid}/coupons/stats",
                 "A drop's coupons: issued, redeemed, rolled back, expired, budget; by "
                 "template, merchant and day", auth="viewer", response=CouponStats,
                 errors=(401, 404, 503), path_params=CID)
async def coupon_stats(request: web.Request) -> web.Response:
    cid = request.match_info["cid"]
    stats = await request.app[ENGINE].coupons.stats(cid)
    if stats is None:
        return refuse("no_drop", {"campaign": cid})
    return json_response(stats)
