"""The one refusal table: complete, consistent, and the same as docs/errors.md."""

import string
from pathlib import Path

from stampede.outcomes import REFUSALS, Outcome, markdown, parse_detail

DOC = Path(__file__).parent.parent / "docs" / "errors.md"
# Every placeholder a template may use; a typo would read "?" in a message.
VOCABULARY = {"campaign", "sku", "user", "qty", "limit", "held", "opens_at", "claim", "status",
              "action", "key", "detail", "scope", "retry_after_ms", "coupon", "redemption",
              "merchant", "amount", "available", "removed", "method", "path", "allow",
              "request_id", "header", "origin", "webhook", "url",
              "usable_at", "template",  # usable_at, template: coupon rules
              "scanner", "ticket",  # after-sale
              "allocation",  # presales: allocations
              "bundle", "line",  # presales: bundles
              "key_channel", "credential_channel"}  # presales: channel API keys


def test_docs_errors_md_is_generated_from_the_table() -> None:
    assert DOC.read_text() == markdown(), "run: python -m stampede.outcomes > docs/errors.md"


def test_every_outcome_has_its_refusal_and_codes_stay_stable() -> None:
    assert {o: o.code for o in Outcome} == {
        Outcome.OK: "ok", Outcome.SOLD_OUT: "sold_out", Outcome.LIMIT_EXCEEDED: "limit_exceeded",
        Outcome.NOT_OPEN: "not_open", Outcome.PAUSED: "paused", Outcome.CLOSED: "closed",
        Outcome.NOT_FOUND: "not_found", Outcome.HOLD_EXPIRED: "hold_expired",
        Outcome.CONFLICT: "conflict", Outcome.IDEMPOTENCY_MISMATCH: "idempotency_mismatch",
        Outcome.INVALID: "invalid_request", Outcome.FENCED: "unavailable",
        Outcome.ADMISSION_REQUIRED: "admission_required", Outcome.WAITLIST_FULL: "conflict",
        Outcome.NOT_SOLD_OUT: "conflict", Outcome.THROTTLED: "throttled",
        Outcome.BLOCKED: "blocked", Outcome.CHALLENGE_REQUIRED: "challenge_required",
        Outcome.GUARD_CONTEXT_NEEDED: "internal", Outcome.NOT_ELIGIBLE: "not_eligible",
        Outcome.PRESALE_CODE_INVALID: "presale_code_invalid",
        Outcome.PRESALE_CODE_USED: "presale_code_used",
        Outcome.CAMPAIGN_MISSING: "not_found",  # leftovers: 503 instead while it heals
        Outcome.SHARD_DRY: "internal"}  # sharded campaigns


def test_templates_use_only_known_placeholders_and_statuses_are_errors() -> None:
    for reason, r in REFUSALS.items():
        names = {f for _, f, _, _ in string.Formatter().parse(r.template) if f}
        assert names <= VOCABULARY, (reason, names - VOCABULARY)
        assert 400 <= r.status <= 599, reason
        assert set(r.values) <= VOCABULARY | {"opens_ms", "wait_ms", "next_ms"}, reason


def test_a_message_never_fails_for_a_missing_parameter() -> None:
    assert REFUSALS["per_sku"].message({"user": "u", "sku": "s"}) == (
        "user 'u' may hold at most ? of SKU 's' (per-SKU limit); they hold ?")


def test_a_script_detail_parses_into_named_values() -> None:
    assert parse_detail("per_sku:2:1") == ("per_sku", {"limit": 2, "held": 1})
    assert parse_detail("no_sku") == ("no_sku", {})
    assert parse_detail("") == ("", {})
    assert parse_detail("unknown:1") == ("unknown", {})
