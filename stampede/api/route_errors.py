"""Which error codes each route can answer, status by status, for the OpenAPI document.

Most statuses carry one code whatever the route (401 unauthorized, 404
not_found, 429 throttled, 503 unavailable...). Three carry several, and
which of them a route can give depends on what it does; those are narrowed
here per operation (the handler's name), read from the route's handler and
the refusals of its script (the `Refusals:` and `Returns` headers of
stampede/lua/). tests/api/test_openapi_examples.py checks that every code
named is a refusal of that status and that every route answering 403 or
409 is listed, so none falls back to the table-wide list unnoticed.
"""

from stampede.outcomes import REFUSALS

_GATE = ("not_open", "paused", "closed")
"""A sale's gate, checked by claims and waitlist joins."""
_GUARD = ("admission_required", "blocked", "challenge_required")
"""A claim's waiting room and scalper guard."""
_OPERATOR = {403: ("forbidden",)}
"""A viewer token on a changing admin route."""

NARROWED: dict[str, dict[int, tuple[str, ...]]] = {
    "create_claim": {403: (*_GUARD, "invalid_channel_key", "channel_mismatch"),
                     409: (*_GATE, "sold_out", "limit_exceeded", "conflict")},
    "confirm_claim": {409: ("hold_expired", "conflict")},
    "cancel_claim": {409: ("hold_expired", "conflict")},
    "join_waitlist": {403: ("admission_required",),
                      409: (*_GATE, "limit_exceeded", "conflict")},
    "take_ticket": {409: ("closed",)},
    "claim_coupon": {403: (*_GUARD, "forbidden"),
                     409: (*_GATE, "sold_out", "limit_exceeded", "conflict", "points_refused")},
    "claim_with_code": {403: (*_GUARD, "forbidden"),
                        409: (*_GATE, "sold_out", "limit_exceeded", "conflict")},
    "referral_code": {403: ("forbidden",)},
    "rotating_code": {409: ("conflict",)},
    "offer_gift": {409: ("conflict",)},
    "accept_gift": {409: ("limit_exceeded", "conflict")},
    "redeem": {403: ("forbidden",), 409: ("limit_exceeded", "conflict")},
    "put_campaign": {**_OPERATOR, 409: ("conflict",)},
    "patch_campaign": {**_OPERATOR, 409: ("conflict",)},
    "adjust_stock": {**_OPERATOR, 409: ("conflict",)},
    "create_webhook": {**_OPERATOR,
                       400: ("invalid_request", "malformed_request", "webhook_url_refused")},
    "patch_webhook": {**_OPERATOR,
                      400: ("invalid_request", "malformed_request", "webhook_url_refused")},
    # after-sale
    "buyer_refund": {403: ("forbidden",), 409: ("conflict",)},
    "offer_transfer": {409: ("conflict",)},
    "offer_ticket_transfer": {409: ("conflict",)},
    "accept_transfer": {403: ("forbidden",), 409: ("limit_exceeded", "conflict")},
}
_EVERYWHERE: dict[int, tuple[str, ...]] = {400: ("invalid_request", "malformed_request")}
"""What a status means on any route not narrowed above (403 on an operator route too)."""


def codes(operation_id: str, status: int, auth: str) -> list[str]:
    """The codes `status` can carry on this route."""
    own = NARROWED.get(operation_id, {}).get(status)
    if own is not None:
        return list(own)
    if status == 403 and auth == "operator":
        return list(_OPERATOR[403])
    if status in _EVERYWHERE:
        return list(_EVERYWHERE[status])
    return sorted({r.code for r in REFUSALS.values() if r.status == status})
