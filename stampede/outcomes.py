"""Outcomes and refusals: the one table every answer of the service comes from.

`Outcome` names the small codes every Lua script answers with; its values
mirror the constants at the top of `stampede/lua/include/common.lua` (a test
keeps the two in step). A refusal is finer than an outcome: LIMIT_EXCEEDED
may be the campaign's per-user limit or a SKU's, NOT_FOUND an unknown
campaign or an unknown SKU. `REFUSALS` gives each refusal, by its reason,
exactly one stable error code, one HTTP status, one message template and
its Retry-After rule; sale claims, coupons, the scalper guard, waitlists,
the waiting room, the admin routes and the HTTP layer itself all answer
from it (`stampede.api.errors.refuse`). docs/errors.md is generated from it
(`python -m stampede.outcomes`) and a test checks the two are the same.

The domain never imports HTTP: a status here is plain data.
"""

import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Outcome(IntEnum):
    OK = 0
    SOLD_OUT = 1
    LIMIT_EXCEEDED = 2
    NOT_OPEN = 3
    PAUSED = 4
    CLOSED = 5
    NOT_FOUND = 6
    HOLD_EXPIRED = 7
    CONFLICT = 8
    IDEMPOTENCY_MISMATCH = 9
    INVALID = 10
    FENCED = 11
    ADMISSION_REQUIRED = 12
    WAITLIST_FULL = 13
    NOT_SOLD_OUT = 14
    THROTTLED = 15
    BLOCKED = 16
    CHALLENGE_REQUIRED = 17
    GUARD_CONTEXT_NEEDED = 18
    """Internal, never answered: the claim script learnt that the campaign is
    guarded since the engine last looked, so the claim is sent again with its
    guard context (devices, networks, solutions)."""
    # -- presales (access phases) ---------------------------------------------
    NOT_ELIGIBLE = 30
    """The campaign sells only to audiences (access phases) the claimant is not in."""
    # -- presales (presale codes) ----------------------------------------------
    PRESALE_CODE_INVALID = 31
    """A presale code that is not genuine, not this campaign's, or bound to someone else."""
    PRESALE_CODE_USED = 32
    """A presale code whose uses are all spent."""
    # -- leftovers: a campaign lost from Redis, as a script saw it ---------------
    CAMPAIGN_MISSING = 76
    """The script found no campaign state at all: never defined, or lost (flushed)
    and about to be healed from the store; api.healing tells which (404 or 503)."""
    # -- sharded campaigns -------------------------------------------------------
    SHARD_DRY = 60
    """Internal, never answered: the claimant's shard has too few units; the engine
    borrows from the other shards and sends the claim again."""

    @property
    def reason(self) -> str:
        """The refusal this outcome means when nothing finer is known."""
        return self.name.lower()

    @property
    def code(self) -> str:
        """The stable error code clients see ("ok" for OK)."""
        return "ok" if self is Outcome.OK else REFUSALS[self.reason].code


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    """The stable error code (`error.code`); several refusals may share one."""
    status: int
    template: str
    """The message, with {placeholders} for the things and limits it names."""
    when: str
    """When it is answered (for docs/errors.md)."""
    retry_after: str = ""
    """When a Retry-After header comes with it, and what it says ('' = never)."""
    values: tuple[str, ...] = ()
    """Names of the numbers a Lua script sends after the reason ("name:v1:v2")."""

    def message(self, params: Mapping[str, Any]) -> str:
        """The template filled in; a placeholder nobody gave reads '?' (never a 500)."""
        return _FORMATTER.vformat(self.template, (), _Missing(params))


class _Missing(dict[str, Any]):
    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__(params)

    def __missing__(self, key: str) -> str:
        return "?"


_FORMATTER = string.Formatter()
_SOON = "1 (retry shortly)"


def _r(code: str, status: int, template: str, when: str, retry_after: str = "",
       values: tuple[str, ...] = ()) -> Refusal:
    return Refusal(code, status, template, when, retry_after, values)


REFUSALS: dict[str, Refusal] = {
    # -- a campaign's state and schedule ------------------------------------
    "not_open": _r("not_open", 409, "campaign '{campaign}' opens at {opens_at}",
                   "a claim, coupon claim or waitlist join before the opening",
                   "seconds until the opening", ("opens_ms", "wait_ms")),
    "paused": _r("paused", 409, "campaign '{campaign}' is paused by its operator; "
                 "claims are taken again when it resumes (GET /v1/campaigns/{campaign} "
                 "shows its state)",
                 "the campaign is paused by an operator (no Retry-After: a pause has no "
                 "known end)"),
    "closed": _r("closed", 409, "campaign '{campaign}' is closed",
                 "after closes_at, or closed by an operator"),
    "fenced": _r("unavailable", 503, "campaign '{campaign}' is being rebuilt from the store; "
                 "retry shortly", "recovery is rebuilding the campaign", _SOON),
    "admission_required": _r(
        "admission_required", 403, "campaign '{campaign}' has a waiting room: take a ticket "
        "(POST /v1/campaigns/{campaign}/queue) and claim with the admission token you get "
        "when admitted (X-Admission-Token)",
        "a claim without a valid admission token where the campaign has a waiting room"),
    # -- what a claim asks for ----------------------------------------------
    "sold_out": _r("sold_out", 409, "no units of SKU '{sku}' are left in campaign "
                   "'{campaign}'", "fewer units are available than asked (or a waitlist is "
                   "ahead)"),
    "per_user": _r("limit_exceeded", 409, "user '{user}' may hold at most {limit} units in "
                   "campaign '{campaign}' (per-user limit); they hold {held}",
                   "the claim would take the user over the campaign's per-user limit",
                   values=("limit", "held")),
    "per_sku": _r("limit_exceeded", 409, "user '{user}' may hold at most {limit} of SKU "
                  "'{sku}' (per-SKU limit); they hold {held}",
                  "the claim would take the user over the SKU's per-user limit",
                  values=("limit", "held")),
    "limit_exceeded": _r("limit_exceeded", 409, "user '{user}' would go over a limit of "
                         "campaign '{campaign}'", "a limit refused (remembered answers "
                         "from before limits were named)"),
    "max_per_claim": _r("invalid_request", 400, "a claim in campaign '{campaign}' may take at "
                        "most {limit} units (max_per_claim); this one asks for {qty}",
                        "qty is over the campaign's max_per_claim", values=("limit",)),
    "bad_qty": _r("invalid_request", 400, "qty must be at least 1; this request asks for "
                  "{qty}", "qty below 1"),
    "max_coupons": _r("invalid_request", 400, "a coupon claim may issue at most {limit} "
                      "coupons; {qty} of SKU '{sku}' would issue more",
                      "qty times the pack size is over 100", values=("limit",)),
    "not_found": _r("not_found", 404, "not found", "a thing that does not exist (a fallback: "
                    "the reasons below name what is missing)"),
    "no_campaign": _r("not_found", 404, "no campaign '{campaign}'",
                      "the campaign does not exist"),
    "no_sku": _r("not_found", 404, "campaign '{campaign}' has no SKU '{sku}'",
                 "the campaign exists, the SKU does not"),
    "not_a_sale": _r("not_found", 404, "campaign '{campaign}' is a coupon drop: claim with "
                     "POST /v1/campaigns/{campaign}/coupons",
                     "a sale claim or waitlist join in a coupon drop"),
    "not_a_drop": _r("not_found", 404, "campaign '{campaign}' is a sale, not a coupon drop: "
                     "claim with POST /v1/campaigns/{campaign}/claims",
                     "a coupon claim in a sale"),
    "invalid": _r("invalid_request", 400, "{detail}",
                  "the request is malformed, has unknown fields or values out of range"),
    "idempotency_mismatch": _r("idempotency_mismatch", 422, "Idempotency-Key '{key}' was "
                               "used with a different request",
                               "the same key again with another body or target"),
    "in_flight": _r("conflict", 409, "a request with Idempotency-Key '{key}' is still in "
                    "progress; retry shortly", "a retry while the first is being served",
                    _SOON),
    # -- a claim's lifecycle -------------------------------------------------
    "no_claim": _r("not_found", 404, "no claim '{claim}' of yours",
                   "the claim does not exist or is another user's"),
    "hold_expired": _r("hold_expired", 409, "the hold of claim '{claim}' has expired",
                       "confirming or cancelling a hold after its deadline"),
    "claim_settled": _r("conflict", 409, "claim '{claim}' is {status}: it cannot be {action}",
                        "confirming a cancelled claim, or cancelling a confirmed one"),
    "conflict": _r("conflict", 409, "the request conflicts with the current state",
                   "a change the current state does not allow"),
    # -- admin ---------------------------------------------------------------
    "has_claims": _r("conflict", 409, "campaign '{campaign}' has claims and cannot be "
                     "replaced; use PATCH for live changes",
                     "PUT of a campaign that has taken claims"),
    "reopen_closed": _r("conflict", 409, "campaign '{campaign}' is closed and cannot be "
                        "reopened", "PATCH of a closed campaign's state"),
    "bad_schedule": _r("invalid_request", 400, "closes_at must be after opens_at",
                       "a PUT or PATCH whose closes_at is not after its opens_at"),
    "wave": _r("invalid_request", 400, "closes_at must come after every pending wave",
               "a PATCH of closes_at to at or before a pending wave (it would never come)"),
    "not_enough_stock": _r("conflict", 409, "SKU '{sku}' of campaign '{campaign}' has "
                           "{available} units available; {removed} cannot be removed",
                           "a stock change that would take available below zero"),
    # -- waitlists and the waiting room ---------------------------------------
    "waitlist_full": _r("conflict", 409, "the waitlist of SKU '{sku}' in campaign "
                        "'{campaign}' is full ({limit} waiting)",
                        "the SKU's waitlist is at max_length"),
    "not_sold_out": _r("conflict", 409, "SKU '{sku}' of campaign '{campaign}' is not sold out "
                       "(units are available or a wave is coming): claim it instead",
                       "joining the waitlist of a SKU that can still be claimed"),
    "no_waitlist": _r("not_found", 404, "campaign '{campaign}' has no waitlist",
                      "the campaign was defined without one"),
    "not_waiting": _r("not_found", 404, "user '{user}' is not on the waitlist of SKU '{sku}' "
                      "in campaign '{campaign}'", "leaving a waitlist one is not on"),
    "no_waiting_room": _r("not_found", 404, "campaign '{campaign}' has no waiting room",
                          "taking a ticket where there is no waiting room"),
    "no_ticket": _r("not_found", 404, "user '{user}' has no ticket for campaign '{campaign}': "
                    "take one with POST /v1/campaigns/{campaign}/queue",
                    "polling a ticket never taken"),
    "precondition": _r("internal", 500, "internal: the throttle config changed meanwhile",
                       "never answered: the engine reads, merges and writes again"),
    # -- the scalper guard -----------------------------------------------------
    "throttled": _r("throttled", 429, "too many requests ({scope} limit); retry in "
                    "{retry_after_ms} ms", "a rate limit of the guard or the gateway refused",
                    "seconds until the limit admits the next request (exact, rounded up)"),
    "code_throttled": _r("throttled", 429, "too many presale code attempts (per {key}: at "
                         "most {limit} at once, then {detail} a second); retry in "
                         "{retry_after_ms} ms", "a claim with a presale code over the "
                         "code-attempt limit of its user, device or network (reason "
                         "presale_code, presale_code_device, presale_code_network)",
                         "seconds until the limit admits the next attempt (exact, rounded "
                         "up)"),
    "blocked": _r("blocked", 403, "this request is refused ({scope})",
                  "a block list, an account concentration or a risk rule refused"),
    "challenge_required": _r("challenge_required", 403, "solve the challenge (proof of work) "
                             "and send the claim again with X-Challenge-Token and "
                             "X-Challenge-Solution ({scope})",
                             "a risk signal or account concentration asks for proof of work"),
    "guard_context_needed": _r("internal", 500, "internal: claim sent again with its guard "
                               "context", "never answered: the engine resends the claim"),
    # -- sharded campaigns ------------------------------------------------------
    "shard_dry": _r("internal", 500, "internal: claim sent again once its shard borrowed "
                    "units", "never answered: the engine borrows from other shards and "
                    "resends the claim"),
    # -- coupons ---------------------------------------------------------------
    "stock": _r("sold_out", 409, "no coupons of SKU '{sku}' are left in drop '{campaign}'",
                "the coupon SKU has no units left"),
    "budget": _r("sold_out", 409, "drop '{campaign}' has spent its budget",
                 "the drop's face-value budget would be exceeded"),
    "per_day": _r("sold_out", 409, "today's coupons of drop '{campaign}' are all claimed; "
                  "more tomorrow (UTC)", "the drop's daily issue is reached"),
    "user_day": _r("limit_exceeded", 409, "user '{user}' may claim {limit} coupons of drop "
                   "'{campaign}' a day; they have claimed {held} today",
                   "the user's daily claims of the drop are reached", values=("limit", "held")),
    "person": _r("limit_exceeded", 409, "drop '{campaign}' allows {limit} per person; this "
                 "person has claimed {held}", "the identity's claims of the drop are reached",
                 values=("limit", "held")),
    "identity_required": _r("forbidden", 403, "drop '{campaign}' is limited per person: your "
                            "token must carry an identity (idh)",
                            "a per-person drop claimed without an identity"),
    "no_drop": _r("not_found", 404, "no coupon drop '{campaign}'",
                  "coupon stats of a campaign that is no drop"),
    "no_coupon": _r("not_found", 404, "no coupon '{coupon}' of yours",
                    "the coupon does not exist or is another user's"),
    "no_gift": _r("not_found", 404, "no such gift (unknown or altered transfer token)",
                  "accepting an unknown gift"),
    "no_redemption": _r("not_found", 404, "no redemption '{redemption}' of merchant "
                        "'{merchant}'", "the redemption does not exist or is another "
                        "merchant's"),
    "no_merchant": _r("not_found", 404, "no merchant '{merchant}'",
                      "revoking an unknown merchant"),
    "bad_code": _r("not_found", 404, "no such coupon code (unknown, altered, or its key is "
                   "retired)", "redeeming a code that is not a coupon's"),
    "unknown_also_used": _r("conflict", 409, "a code of codes_also_used is not a valid coupon",
                            "the order lists a code that is not a coupon's"),
    "duplicate_code": _r("invalid_request", 400, "a code appears twice in the order",
                         "the same coupon in code and codes_also_used"),
    "merchant_scope": _r("forbidden", 403, "this coupon cannot be redeemed at merchant "
                         "'{merchant}'", "the template's merchants or regions exclude it"),
    "stacking": _r("conflict", 409, "these coupons cannot be combined in one order",
                   "the templates' stacking rules refuse the combination"),
    "threshold": _r("conflict", 409, "the order amount {amount} is below the coupon's "
                    "threshold", "the order is below the template's threshold"),
    "used": _r("conflict", 409, "the coupon is used up", "redeeming or gifting a used coupon"),
    "expired": _r("conflict", 409, "the coupon has expired",
                  "redeeming or gifting after valid_to"),
    "transferred": _r("conflict", 409, "the coupon was given away",
                      "redeeming a coupon after gifting it"),
    "not_yet_valid": _r("conflict", 409, "the coupon is not valid yet",
                        "redeeming before valid_from"),
    "code_expired": _r("forbidden", 403, "this rotating code has expired: show a fresh one",
                       "a rotating code older than its step"),
    "merchant_cap": _r("limit_exceeded", 409, "merchant '{merchant}' has reached its daily "
                       "redemption cap for this drop", "the drop's per-merchant daily cap"),
    "template": _r("conflict", 409, "the coupon changed meanwhile; retry",
                   "the template changed between pricing and redeeming", _SOON),
    "not_transferable": _r("conflict", 409, "this coupon cannot be given away",
                           "gifting a non-transferable coupon"),
    "gift_used": _r("conflict", 409, "this gift has been accepted already",
                    "accepting a gift twice (by another user)"),
    "gift_expired": _r("conflict", 409, "this gift offer has expired",
                       "accepting after the offer's expiry"),
    "gift_void": _r("conflict", 409, "the gifted coupon was used, expired or offered anew",
                    "accepting a gift whose coupon changed"),
    "own_gift": _r("conflict", 409, "you cannot accept your own gift",
                   "the giver accepting"),
    # -- codes users type (promo and referral codes) -------------------------------
    "no_code": _r("not_found", 404, "no such code in drop '{campaign}' (wrong codes are "
                  "limited per user and hour)", "a claim with a code that is neither one of "
                  "the drop's promo codes nor a member's referral code"),
    "code_required": _r("forbidden", 403, "SKU '{sku}' of drop '{campaign}' is issued only "
                        "with a code: claim with POST /v1/campaigns/{campaign}/code-claims",
                        "a plain claim of a SKU that promo or referral codes issue"),
    "code_per_user": _r("limit_exceeded", 409, "user '{user}' may use this code {limit} "
                        "times; they have used it {held}",
                        "the promo code's per-user limit is reached", values=("limit", "held")),
    "own_referral": _r("conflict", 409, "a member cannot use their own referral code (same "
                       "account or same person)", "the referrer, or another account of the "
                       "same person (identity), claiming with the referrer's code"),
    "referral_used": _r("limit_exceeded", 409, "this account or person has been referred in "
                        "drop '{campaign}' already", "a friend (account or identity) "
                        "claiming with a referral code a second time"),
    "referral_limit": _r("limit_exceeded", 409, "this referral code has been used by its "
                         "{limit} friends already", "the referrer's per_referrer is reached",
                         values=("limit",)),
    "referrer_limit": _r("limit_exceeded", 409, "the member who shared this code has reached "
                         "their limit in drop '{campaign}': their reward cannot be issued, so "
                         "neither is yours", "the referrer's per-user or per-SKU limit would "
                         "be passed by the reward"),
    "no_referral": _r("not_found", 404, "drop '{campaign}' has no referral programme",
                      "asking for a referral code where the drop declares none"),
    # -- points exchange -------------------------------------------------------------
    "points_key_required": _r("invalid_request", 400, "SKU '{sku}' is priced in points: "
                              "send an Idempotency-Key (the debit is made once per key)",
                              "a claim of a points-priced SKU without an Idempotency-Key"),
    "points_refused": _r("points_refused", 409, "the points service refused to debit user "
                         "'{user}' for SKU '{sku}' (not enough points?); nothing was issued",
                         "the points service refused the debit"),
    "points_refunded": _r("conflict", 409, "this exchange (Idempotency-Key '{key}') was "
                          "refunded; claim again with a new key",
                          "a retry of an exchange whose debit was given back"),
    "points_unavailable": _r("unavailable", 503, "the points service did not answer; retry "
                             "with the same Idempotency-Key (the debit is made once)",
                             "the points service is not configured or did not answer",
                             _SOON),
    "points_price": _r("conflict", 409, "the points price of SKU '{sku}' changed meanwhile; "
                       "retry", "a claim's debit does not match the SKU's points price "
                       "(the drop was redefined)", _SOON, values=("amount",)),
    # -- coupon rules: carts, time windows, live template changes ------------------
    "lines_required": _r("invalid_request", 400, "this coupon applies to some items or "
                         "categories only: send the order's lines", "redeeming an item- or "
                         "category-scoped coupon without lines"),
    "no_qualifying_lines": _r("conflict", 409, "no line of the order is an item or category "
                              "this coupon applies to", "the cart has no qualifying line"),
    "min_qty": _r("conflict", 409, "the qualifying lines are fewer items than the coupon's "
                  "minimum quantity", "the qualifying lines' quantity is below min_qty"),
    "outside_hours": _r("conflict", 409, "this coupon is usable only at its hours and days; "
                        "next usable at {usable_at}", "redeeming outside the "
                        "template's hours or days (usable_at: 'never' when no window is left "
                        "before it expires)", "seconds until it is next usable",
                        ("next_ms", "wait_ms")),
    "no_template": _r("not_found", 404, "drop '{campaign}' has no template '{template}'",
                      "a live change of an unknown template"),
    # -- after-sale: refunds ------------------------------------------------------
    "refund_not_sold": _r("conflict", 409, "claim '{claim}' is {status}: only a confirmed "
                          "claim can be refunded", "refunding a hold, or a cancelled or "
                          "expired claim"),
    "refund_exceeds": _r("conflict", 409, "claim '{claim}' has {available} units left to "
                         "refund; {qty} cannot be refunded",
                         "a refund of more units than the claim has left", values=("available",)),
    "refund_not_allowed": _r("forbidden", 403, "campaign '{campaign}' does not let buyers "
                             "refund their claims; ask its operator",
                             "a buyer's refund where the campaign has no buyer refund window"),
    "refund_window_closed": _r("conflict", 409, "claim '{claim}' can no longer be refunded by "
                               "its buyer: the campaign allows it for {limit} s after purchase",
                               "a buyer's refund after the campaign's refund window",
                               values=("limit",)),
    # -- after-sale: tickets and check-in -------------------------------------------
    "no_tickets": _r("not_found", 404, "campaign '{campaign}' issues no tickets",
                     "listing tickets of a campaign that does not exist or is not ticketed"),
    "no_scanner": _r("not_found", 404, "no scanner '{scanner}'",
                     "revoking an unknown scanner"),
    "missing_scanner_token": _r("unauthorized", 401, "a scanner bearer token is required",
                                "a scanner route without a token (WWW-Authenticate: Bearer)"),
    "invalid_scanner_token": _r("unauthorized", 401, "the bearer token is not a scanner's "
                                "(unknown or revoked)", "a scanner route with an unknown "
                                "token (WWW-Authenticate: Bearer error=\"invalid_token\")"),
    # -- after-sale: transfers --------------------------------------------------------
    "transfers_off": _r("conflict", 409, "campaign '{campaign}' does not allow transfers",
                           "a transfer where the campaign has no `transfers` rule"),
    "transfer_not_sold": _r("conflict", 409, "claim '{claim}' is {status}: only a confirmed "
                            "claim can be transferred", "transferring a hold, or a cancelled, "
                            "expired, refunded or transferred claim"),
    "transfer_checked_in": _r("conflict", 409, "claim '{claim}' has a ticket checked in: it "
                              "cannot be transferred", "a transfer after a ticket of the "
                              "claim was scanned in"),
    "no_transfer": _r("not_found", 404, "no such transfer token",
                      "the token is unknown (or malformed)"),
    "transfer_used": _r("conflict", 409, "this transfer token has been used",
                        "accepting a token someone else accepted"),
    "transfer_expired": _r("conflict", 409, "this transfer token has expired",
                           "accepting after the campaign's offer_ttl_s"),
    "transfer_to_self": _r("conflict", 409, "you cannot transfer a claim to yourself",
                           "the giver accepting their own token"),
    "transfer_stale": _r("conflict", 409, "the claim of this transfer token is no longer "
                         "its giver's to give", "the claim was refunded, transferred or "
                         "changed since the token was made"),
    # -- after-sale: one-ticket transfers ----------------------------------------------
    "no_sale_ticket": _r("not_found", 404, "no such ticket '{ticket}'",
                    "a ticket id that is malformed, another user's, of an unticketed "
                    "campaign, or past its claim's units"),
    "ticket_not_valid": _r("conflict", 409, "ticket '{ticket}' was refunded or transferred: "
                           "only a valid ticket can be transferred",
                           "transferring a refunded ticket, or one already transferred"),
    # -- presales: price steps patched live (after-sale branch) ------------------------
    "price_steps_excluded": _r("invalid_request", 400, "price_steps: a coupon drop takes no "
                               "price steps", "a PATCH of price_steps onto a coupon drop"),
    # -- presales: bundles patched live (bundleops) ---------------------------------
    "bundles_excluded": _r("invalid_request", 400, "bundles: a coupon drop, or a campaign "
                           "split over shards, takes no bundles", "a PATCH of bundles onto a "
                           "coupon drop or a sharded campaign"),
    "bundle_line": _r("invalid_request", 400, "bundles.{bundle}.lines[{line}].{detail}: not a "
                      "SKU of the campaign, or over its max_per_claim of {limit}",
                      "a PATCH of bundles whose line names a SKU the campaign lacks, or more "
                      "units than max_per_claim", values=("bundle", "line", "detail", "limit")),
    "bundle_limit": _r("invalid_request", 400, "{detail}: bundle '{bundle}' takes {qty} "
                       "units{scope} of {limit}; no claim of it could pass: change or remove "
                       "the bundle (in the same PATCH)", "a PATCH of limits or bundles that "
                       "would leave a bundle in force over max_per_claim, a SKU's per-user "
                       "limit or the campaign's", values=("bundle", "scope", "sku", "limit",
                                                           "qty")),
    "allocations_excluded": _r("invalid_request", 400, "allocations: a coupon drop, a "
                               "campaign with a waitlist or one split over shards takes no "
                               "allocations", "a PATCH of allocations onto such a campaign"),
    "allocation_taken": _r("invalid_request", 400, "allocations.{sku}[{detail}].qty: holds and "
                           "sales took {held} units of it already", "a PATCH lowering an "
                           "allocation's qty below what was taken from it",
                           values=("sku", "detail", "held")),
    "allocations_over": _r("invalid_request", 400, "allocations.{sku}: the allocations would "
                           "reserve {qty} units, more than the {available} units available "
                           "or still to come", "a PATCH of allocations reserving more than "
                           "the SKU's units", values=("sku", "qty", "available")),
    "bundles_too_many": _r("invalid_request", 400, "bundles: a campaign has at most 64 "
                           "bundles", "a PATCH of bundles that would leave more than 64"),
    # -- paid vouchers ------------------------------------------------------------
    "not_a_voucher": _r("not_a_voucher", 409, "claim '{claim}' is not a paid voucher: its "
                        "coupons were issued at claim, there is nothing to pay or refund",
                        "paying or refunding a claim of a free (or points) SKU"),
    "voucher_paid_other": _r("conflict", 409, "claim '{claim}' is already paid with another "
                             "payment; paying it again needs the same payment reference",
                             "paying a paid voucher with another payment reference"),
    "voucher_unpaid": _r("conflict", 409, "claim '{claim}' is a hold not yet paid: confirm "
                         "its payment, or let it lapse at its deadline (nothing to refund)",
                         "refunding a paid voucher whose hold was never paid"),
    "refunded": _r("conflict", 409, "the coupon was refunded (its paid voucher was "
                   "refunded): it is void", "redeeming or gifting a refunded coupon"),
    "paid_voucher_refund": _r("conflict", 409, "claim '{claim}' is a paid voucher: refund "
                              "it at POST /v1/paid-holds/{claim}/refund (its coupons are "
                              "voided there)", "a sale refund of a paid voucher's claim"),
    "voucher_used": _r("voucher_used", 409, "claim '{claim}' cannot be refunded: a coupon of "
                       "it was used, expired, given away or offered as a gift (only an "
                       "unused voucher is refunded)", "refunding a voucher not wholly unused"),
    # -- who is calling ----------------------------------------------------------
    "missing_token": _r("unauthorized", 401, "a bearer token is required (Authorization: "
                        "Bearer <JWT>)", "a user route without a token (WWW-Authenticate: "
                        "Bearer)"),
    "invalid_token": _r("unauthorized", 401, "the bearer token is not valid: {detail}",
                        "a bad, expired or foreign user token (WWW-Authenticate: Bearer "
                        "error=\"invalid_token\")"),
    "missing_admin_token": _r("unauthorized", 401, "an admin bearer token is required",
                              "an admin route without a token (WWW-Authenticate: Bearer)"),
    "invalid_admin_token": _r("unauthorized", 401, "the bearer token is not an admin token",
                              "an admin route with an unknown token (WWW-Authenticate: "
                              "Bearer error=\"invalid_token\")"),
    "missing_merchant_token": _r("unauthorized", 401, "a merchant bearer token is required",
                                 "a merchant route without a token (WWW-Authenticate: "
                                 "Bearer)"),
    "invalid_merchant_token": _r("unauthorized", 401, "the bearer token is not a merchant's "
                                 "(unknown or revoked)", "a merchant route with an unknown "
                                 "token (WWW-Authenticate: Bearer error=\"invalid_token\")"),
    "invalid_credentials": _r("unauthorized", 401, "the Authorization header is not valid "
                              "text (send ASCII or UTF-8)", "an Authorization header whose "
                              "bytes are not text (WWW-Authenticate: Bearer "
                              "error=\"invalid_token\")"),
    "read_only_token": _r("forbidden", 403, "a viewer token may only read: this route needs "
                          "an operator token", "a viewer token on a changing admin route"),
    # -- presales: access phases ---------------------------------------------------
    "phase_not_open": _r("not_open", 409, "campaign '{campaign}' opens to you at {opens_at} "
                         "(the access phase of your tiers)",
                         "a claim before the opening of the earliest access phase the "
                         "claimant's tiers (or everyone) belong to",
                         "seconds until that phase opens", ("opens_ms", "wait_ms")),
    "phases": _r("invalid_request", 400, "phases: every phase must open at or after opens_at "
                 "and before closes_at", "a PATCH of the phases or the schedule that would "
                 "leave a phase's opening outside opens_at..closes_at"),
    "phases_excluded": _r("invalid_request", 400, "phases: a campaign with a waitlist, or a "
                          "coupon drop, takes no access phases", "a PATCH of phases onto a "
                          "campaign with a waitlist or a coupon drop (an offer or a coupon "
                          "claim would pass no phase gate)"),
    "not_eligible": _r("not_eligible", 403, "campaign '{campaign}' sells only to its presale "
                       "audiences, and your credential carries none of their tiers",
                       "a claim of a campaign whose access phases all name tiers, by a "
                       "claimant with none of them"),
    # -- presales: presale codes ----------------------------------------------------
    "presale_code_invalid": _r("presale_code_invalid", 403, "this presale code is not valid "
                               "for campaign '{campaign}'", "a presale code refused (a fallback: "
                               "the reasons below say why)"),
    "code_invalid": _r("presale_code_invalid", 403, "this presale code is not valid for "
                       "campaign '{campaign}'", "a claim with a presale code that is not "
                       "genuine (its signature fails) or not one of the campaign's batches"),
    "code_bound": _r("presale_code_invalid", 403, "this presale code of campaign '{campaign}' "
                     "belongs to another user", "a claim with a code of a binding batch "
                     "already used by someone else"),
    "presale_code_used": _r("presale_code_used", 409, "this presale code of campaign "
                            "'{campaign}' is used up", "a presale code refused as spent (a "
                            "fallback)"),
    "no_presale_batch": _r("not_found", 404, "campaign '{campaign}' has no such batch of "
                           "presale codes", "exporting a batch that was never issued"),
    "code_used": _r("presale_code_used", 409, "this presale code of campaign '{campaign}' "
                    "has made all of its {limit} claims", "a claim with a code whose uses are "
                    "all spent", values=("limit",)),
    # -- presales: real-name one per person (limits.per_person) ---------------------
    "per_person": _r("limit_exceeded", 409, "campaign '{campaign}' allows {limit} units per "
                     "person (per-person limit); this person holds or has bought {held}",
                     "the claim would take the real person (the credential's identity, "
                     "across accounts) over the campaign's per-person limit",
                     values=("limit", "held")),
    "person_required": _r("forbidden", 403, "campaign '{campaign}' is limited per person: "
                          "your credential must carry an identity (idh)",
                          "a claim of a per-person campaign whose credential carries no "
                          "identity"),
    # -- presales: allocations (skus[].allocations) ---------------------------------
    "no_allocation": _r("not_found", 404, "SKU '{sku}' of campaign '{campaign}' has no "
                        "allocation '{allocation}'", "returning an allocation that is not "
                        "in the spec (or a campaign or SKU that is not there)"),
    "allocation_returned": _r("conflict", 409, "allocation '{allocation}' of SKU '{sku}' has "
                              "already returned to the shared pool", "returning an "
                              "allocation twice (by ops or at its returns_at)"),
    # -- presales: channel API keys (X-Channel-Key, STAMPEDE_CHANNEL_KEYS) -------------
    "invalid_channel_key": _r("invalid_channel_key", 403, "X-Channel-Key is not a channel "
                              "key of this service", "a claim whose X-Channel-Key is none "
                              "of STAMPEDE_CHANNEL_KEYS"),
    "channel_mismatch": _r("channel_mismatch", 403, "X-Channel-Key is of channel "
                           "'{key_channel}' but your credential is of channel "
                           "'{credential_channel}'", "a claim whose X-Channel-Key names "
                           "another channel than its token's `channel` (or X-Channel)"),
    # -- presales: bundles and add-ons (claims of several SKUs) -----------------------
    "no_bundle": _r("not_found", 404, "campaign '{campaign}' has no bundle '{bundle}'",
                    "a claim of a bundle the campaign's spec does not define"),
    "line_twice": _r("invalid_request", 400, "lines[{line}].sku: SKU '{sku}' is listed "
                     "twice; a claim takes each SKU in one line, with its qty", "a claim of "
                     "lines naming a SKU twice"),
    "refund_bundle_units": _r("invalid_request", 400, "qty: claim '{claim}' is a bundle, "
                              "refunded whole (every line, no qty); refund one line by its "
                              "own claim id", "a refund of some units of a bundle claim"),
    "bundle_sharded": _r("conflict", 409, "campaign '{campaign}' is split across shards: it "
                         "takes claims of one SKU, not bundles", "a bundle claim (of a "
                         "spec bundle or of lines) on a sharded campaign"),
    # -- HTTP ----------------------------------------------------------------------
    "no_route": _r("not_found", 404, "no route {method} {path}", "an unknown path"),
    "method_not_allowed": _r("method_not_allowed", 405, "{method} is not allowed on {path}; "
                             "allowed: {allow}", "a known path with another method (Allow "
                             "lists the methods)"),
    "webhook_url": _r("webhook_url_refused", 400, "webhooks may not be sent to '{url}': "
                      "{detail}", "a webhook URL that is not http(s), or whose host is (or "
                      "resolves to) a loopback, link-local or private address not in "
                      "STAMPEDE_WEBHOOK_ALLOWED_NETWORKS"),
    "no_webhook": _r("not_found", 404, "no webhook endpoint '{webhook}'",
                     "the webhook endpoint does not exist"),
    "live_full": _r("unavailable", 503, "this worker already serves {limit} live feeds; "
                    "retry shortly (or poll GET /v1/campaigns/{campaign})",
                    "a live feed past the worker's STAMPEDE_LIVE_MAX_LISTENERS", _SOON),
    "cors_origin": _r("cors_origin", 403, "origin '{origin}' may not call this API from a "
                      "browser (STAMPEDE_CORS_ORIGINS lists the origins that may)",
                      "a CORS preflight from an origin that is not allowed"),
    "body_too_large": _r("invalid_request", 413, "the body is larger than the {limit} bytes "
                         "this listener takes", "a body over the listener's size limit"),
    "unsupported_media_type": _r("invalid_request", 415, "{detail}",
                                 "a body of another media type than JSON"),
    "undecodable_header": _r("invalid_request", 400, "the {header} header is not valid text "
                             "(send ASCII or UTF-8)", "a header the service reads whose bytes "
                             "are not text"),
    "malformed_request": _r("malformed_request", 400, "malformed HTTP request: {detail}",
                            "the HTTP parser refused the request (a header line over 8190 "
                            "bytes, a bad method, a control byte in the path)"),
    "request_timeout": _r("request_timeout", 408, "the request body did not all arrive "
                          "within {limit} s of its headers", "a body slower than "
                          "STAMPEDE_BODY_TIMEOUT_S (the connection is then closed)"),
    "timed_out": _r("unavailable", 503, "the request timed out; retry shortly",
                    "the server gave up waiting for the request", _SOON),
    "unavailable": _r("unavailable", 503, "a backing service is unreachable ({detail}); "
                      "retry shortly", "Redis or the store cannot be reached", _SOON),
    "internal": _r("internal", 500, "internal error; request id {request_id}",
                   "a bug (logged with the request id)"),
    # -- front-end kit: the browser SDK's and the demo page's files -------------------
    "no_static_file": _r("not_found", 404, "no file {path}: {detail}",
                         "a file of /sdk/v1/ or /demo/ that is not there"),
    # -- lookups and exports (the query API, stampede/api/lookups.py) ----------------
    "no_claim_record": _r("not_found", 404, "no claim '{claim}' in the durable store",
                          "a claim lookup of an id the store does not hold (yet)"),
    "no_coupon_record": _r("not_found", 404, "no coupon '{coupon}' in the durable store",
                           "a coupon lookup of an id the store does not hold (yet)"),
    "no_redemption_record": _r("not_found", 404, "no redemption '{redemption}' in the "
                               "durable store", "a redemption lookup of an id the store does "
                               "not hold (yet)"),
    "bad_query": _r("invalid_request", 400, "{detail}",
                    "a listing's query parameter out of range: limit, cursor, since/until, "
                    "format, or one the listing does not take"),
    "no_store": _r("unavailable", 503, "this listener has no durable store to query; retry "
                   "shortly", "a lookup on a listener started without its store", _SOON),
    # -- the ops console (api/console.py, api/console_feed.py) ---------------------
    "invalid_live_ticket": _r("unauthorized", 401, "the live-feed ticket is {detail}; "
                              "POST /admin/v1/live/ticket with an admin token for a new one",
                              "the console's live feed with a malformed, forged or expired "
                              "ticket"),
    "console_full": _r("unavailable", 503, "this worker already serves {limit} console "
                       "feeds; retry shortly", "a console feed past the worker's "
                       "STAMPEDE_CONSOLE_MAX_LISTENERS", _SOON),
    "no_console_asset": _r("not_found", 404, "no console asset {path} (an older page names "
                           "assets of its own version: reload it)",
                           "a console asset that does not exist, or of another version"),
    # -- leftovers: a campaign lost from Redis (api/healing.py) ----------------------
    "campaign_missing": _r("not_found", 404, "no campaign '{campaign}'",
                           "a waitlist, waiting-room, status or after-sale operation found "
                           "no campaign; one Redis lost but the store knows answers 503 "
                           "unavailable (Retry-After) until it is healed"),
    # -- cluster mode (STAMPEDE_REDIS_CLUSTER) ---------------------------------------
    "cluster_unavailable": _r("unavailable", 503, "the Redis Cluster shard that holds this "
                              "is failing over or unreachable ({detail}); retry shortly with "
                              "the same Idempotency-Key",
                              "cluster mode: a primary died and its replica is not yet "
                              "promoted, or the slot map is moving", _SOON),
}
"""Every refusal by reason. An outcome's own reason is its lower-cased name."""


GUARD_REFUSALS = frozenset({Outcome.THROTTLED, Outcome.BLOCKED, Outcome.CHALLENGE_REQUIRED})
"""The scalper guard's refusals: they carry a reason (and a retry-after or a challenge)."""

OUTCOMES: dict[int, Outcome] = {int(o): o for o in Outcome}
"""Outcome by code, for the hot path (a dict lookup beats the enum call); features
take codes from ranges of their own, so the codes have gaps."""
assert all(o.reason in REFUSALS for o in Outcome if o is not Outcome.OK), \
    "every outcome needs its refusal"


def parse_detail(detail: str) -> tuple[str, dict[str, int]]:
    """A script's refusal detail "reason[:v1[:v2]]" as (reason, named values)."""
    reason, *raw = detail.split(":")
    refusal = REFUSALS.get(reason)
    names = refusal.values if refusal is not None else ()
    values = {}
    for name, value in zip(names, raw, strict=False):
        if value.lstrip("-").isdigit():
            values[name] = int(value)
    return reason, values


def markdown() -> str:
    """docs/errors.md: the public error table, from `REFUSALS`."""
    lines = [_DOC_HEAD, "| reason | code | HTTP | when | message | Retry-After |",
             "| --- | --- | --- | --- | --- | --- |"]
    for reason, r in REFUSALS.items():
        if r.code == "internal" and reason != "internal":
            continue
        cells = (reason, f"`{r.code}`", str(r.status), r.when, r.template,
                 r.retry_after or "-")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


_DOC_HEAD = """\
# Errors

Every error is JSON: `{"error": {"code": ..., "message": ...}}`. Clients
branch on `code` (stable) and HTTP status; `message` is for people and
names the thing and the limit that refused. Some errors add fields:
`opens_at` (not_open), `reason`, `retry_after_ms` and `challenge` (the
scalper guard's refusals).

Several refusals share a code (a per-user and a per-SKU limit are both
`limit_exceeded`); the reason column is what the message tells apart.
Every 401 carries `WWW-Authenticate: Bearer` (with `error="invalid_token"`
when a token was given), and 405 carries `Allow`.

This file is generated from `REFUSALS` in `stampede/outcomes.py`
(`python -m stampede.outcomes > docs/errors.md`); a test fails when they
differ.
"""


if __name__ == "__main__":
    print(markdown(), end="")
