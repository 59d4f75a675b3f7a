"""The public API under /v1: campaign status and the claim lifecycle."""

import functools

import msgspec
from aiohttp import web

from stampede.api.channel_keys import HEADER as CHANNEL_KEY
from stampede.api.channel_keys import claim_channel
from stampede.api.context import AUTH, ENGINE, GUARD, USER
from stampede.api.errors import decode, json_response, read_body, refuse, refuse_outcome
from stampede.api.guard import HEADERS as GUARD_HEADERS
from stampede.api.guard import client_signals, guard_answer
from stampede.api.headers import cached, header
from stampede.api.healing import seen
from stampede.api.idempotency import checked_key
from stampede.api.routing import CID, ApiRoutes
from stampede.domain.models import CampaignPublic, ClaimBody, ClaimRequest, ClaimView
from stampede.domain.seen import CampaignSeen
from stampede.errors import ValidationError
from stampede.metrics import count_claim
from stampede.outcomes import Outcome
from stampede.state.idempotency import fingerprint

api = ApiRoutes("public")

# A claim of a sharded campaign's shard k >= 1 names it: "<campaign>:s<k>[p<m>].<hex>".
CLAIM = {"claim_id": r"^[a-z0-9][a-z0-9_-]{0,63}(:s[1-9][0-9]?(p[0-9]{1,6})?)?\.[0-9a-f]{20}$"}

_claim_decoder = msgspec.json.Decoder(ClaimRequest)
_SETTLE_REFUSALS = {Outcome.NOT_FOUND: "no_claim", Outcome.CONFLICT: "claim_settled",
                    Outcome.FENCED: "fenced"}
_DONE = {"confirm": "confirmed", "cancel": "cancelled"}


@api.route("GET", "/v1/campaigns/{cid}", "Public status of a campaign (ETag, "
           "Cache-Control max-age=1; If-None-Match answers 304)",
           response=CampaignPublic, also=(304,), errors=(404, 503), path_params=CID,
           headers={"If-None-Match": "the ETag of an earlier answer: 304 while unchanged"})
async def campaign_status(request: web.Request) -> web.Response:
    cid = request.match_info["cid"]
    status, campaign = await request.app[ENGINE].seen_public_status(cid)
    if campaign == "fenced":
        return refuse("fenced", {"campaign": cid})
    if status is None:
        return seen(refuse("no_campaign", {"campaign": cid}), campaign)
    return cached(request, json_response(status))


@api.route("POST", "/v1/campaigns/{cid}/claims", "Claim units: a hold that expires",
           auth="user", body=ClaimBody, response=ClaimView, status=201, idempotent=True,
           errors=(400, 401, 403, 404, 409, 413, 422, 429, 503), path_params=CID,
           headers={"X-Admission-Token": "required when the campaign has a waiting room: "
                                         "the token of your admitted ticket",
                    CHANNEL_KEY: "presales: a channel API key (STAMPEDE_CHANNEL_KEYS) for "
                                 "partner and box-office integrations: the claim is made "
                                 "through its channel; 403 invalid_channel_key for an "
                                 "unknown key, 403 channel_mismatch when the token's "
                                 "channel differs", **GUARD_HEADERS})
async def create_claim(request: web.Request) -> web.Response:
    user = request[USER].id
    channel = claim_channel(request, request.app[AUTH].channel_keys, request[USER].channel)
    body = decode(_claim_decoder, await read_body(request))
    key = checked_key(request)
    signals = client_signals(request)
    cid = request.match_info["cid"]
    sku = _claimed(body)
    qty = body.qty if isinstance(body.qty, int) else 1
    engine = request.app[ENGINE]
    if sku is not None:
        claim = functools.partial(
            engine.claim, cid, user, sku, qty, idempotency_key=key,
            admission_token=header(request, "X-Admission-Token"), client=signals,
            tiers=request[USER].tiers, code=body.code, identity=request[USER].identity,
            channel=channel)
    else:  # bundles: several SKUs at once
        claim = functools.partial(
            engine.claim_bundle, cid, user, bundle=body.bundle or None,
            lines=body.lines or (), idempotency_key=key,
            admission_token=header(request, "X-Admission-Token"), client=signals,
            tiers=request[USER].tiers, code=body.code, identity=request[USER].identity,
            channel=channel)
    if key is None:  # nothing to guard: no context manager to enter and leave
        result = await claim()
    else:
        async with request.app[GUARD].in_flight(user, key):
            result = await claim()
    count_claim(result.outcome)
    refused = guard_answer(result)
    if refused is not None:
        return refused
    if result.outcome is not Outcome.OK:
        if result.line is not None and body.lines:
            sku, qty = body.lines[result.line].sku, body.lines[result.line].qty
        response = refuse_outcome(result.outcome, result.reason, result.params,
                                  campaign=cid, sku=sku or "", user=user, qty=qty, key=key,
                                  bundle=body.bundle or "", line=result.line or 0)
        if result.outcome is Outcome.NOT_FOUND and result.reason in _SEEN_BY_CLAIM:
            seen(response, _SEEN_BY_CLAIM[result.reason])
        return response
    return json_response(result.claim, status=201)


def _claimed(body: ClaimRequest) -> str | None:
    """The SKU of a claim of one, None for a bundle claim; 400 naming the field unless
    exactly one of sku, lines and bundle is given."""
    given = [name for name, v in (("sku", body.sku), ("lines", body.lines),
                                  ("bundle", body.bundle)) if v is not msgspec.UNSET]
    if len(given) != 1:
        raise ValidationError("a claim names exactly one of `sku`, `lines` and `bundle`; "
                              f"this one names {' and '.join(given) or 'none'}")
    if isinstance(body.sku, str):
        return body.sku
    if body.qty is not msgspec.UNSET:
        raise ValidationError(f"qty: a claim of {given[0]} gives each line's qty instead")
    return None


_SEEN_BY_CLAIM: dict[str, CampaignSeen] = {
    "no_campaign": "missing", "not_a_sale": "live", "no_sku": "live"}
"""What claim_batch.lua saw of the campaign when it answered NOT_FOUND with this
reason (a fenced campaign is FENCED there: 503)."""


def _seen_campaign(response: web.Response, reason: str | None) -> web.Response:
    """The 404 of confirm.lua or cancel.lua, which check the campaign first: it was
    missing (no_campaign), or there and open (a fenced one is FENCED: 503)."""
    seen(response, "missing" if reason == "no_campaign" else "live")
    return response


@api.route("GET", "/v1/claims/{claim_id}", "One of my claims", auth="user",
           response=ClaimView, errors=(401, 404, 503), path_params=CLAIM)
async def get_claim(request: web.Request) -> web.Response:
    user = request[USER].id
    claim_id = request.match_info["claim_id"]
    found = await request.app[ENGINE].find_claim(claim_id, user)
    if found.claim is not None:
        return json_response(found.claim)
    if found.campaign == "fenced":  # being rebuilt: the claim may yet come back
        return refuse("fenced", {"campaign": claim_id.split(".", 1)[0].split(":")[0]})
    response = refuse("no_claim", {"claim": claim_id})
    seen(response, found.campaign)
    return response


@api.route("POST", "/v1/claims/{claim_id}/confirm", "Confirm (pay for) a hold: it becomes sold",
           auth="user", response=ClaimView, idempotent=True,
           errors=(401, 404, 409, 422, 503), path_params=CLAIM)
async def confirm_claim(request: web.Request) -> web.Response:
    return await _settle(request, "confirm")


@api.route("POST", "/v1/claims/{claim_id}/cancel", "Give a hold back: its units return",
           auth="user", response=ClaimView, idempotent=True,
           errors=(401, 404, 409, 422, 503), path_params=CLAIM)
async def cancel_claim(request: web.Request) -> web.Response:
    return await _settle(request, "cancel")


async def _settle(request: web.Request, op: str) -> web.Response:
    user = request[USER].id
    claim_id = request.match_info["claim_id"]
    engine = request.app[ENGINE]
    settle = engine.confirm if op == "confirm" else engine.cancel

    key = checked_key(request)

    async def run() -> web.Response:
        result = await settle(claim_id, user, key)
        if result.outcome is Outcome.NOT_FOUND:
            return _seen_campaign(refuse("no_claim", {"claim": claim_id}), result.reason)
        if result.outcome is not Outcome.OK:
            return refuse(_SETTLE_REFUSALS.get(result.outcome, result.outcome.reason),
                          {"claim": claim_id, "action": _DONE[op],
                           "status": result.claim.status if result.claim else "?",
                           "campaign": claim_id.split(".", 1)[0]})
        if result.claim is None:  # its campaign's keys vanished since: it is being healed
            return refuse("fenced", {"campaign": claim_id.split(".", 1)[0].split(":")[0]})
        return json_response(result.claim)

    return await request.app[GUARD].replayable(request, user, fingerprint(op, claim_id), run)
