"""What every Stampede locust scenario shares: options, identities, verdicts.

- Options: which campaign, how to authenticate, whether to create the
  campaign first, and the thresholds that make a headless run exit non-zero.
- Setup: steps run once before any user starts (`SETUP_STEPS`: the
  campaign, then whatever a scenario adds). A failed step ends the run at
  once with one line on stderr and exit code 1: no load against a missing
  campaign. The admin API is `--admin-url`, by default the `--host` with
  the next port (8000 -> 8001, as `stampede serve` listens); the admin token
  `--admin-token`, by default the first operator token of
  `STAMPEDE_ADMIN_TOKENS`, else `var/admin.token` (what `bin/serve` made).
- Identities: each simulated person is a distinct user id, sent as a JWT
  (--jwt-secret) or, against a dev-auth server, as X-User-Id.
- Verdicts: expected refusals of a rush (sold_out, limit_exceeded,
  throttled, ...) are successes of the scenario; anything else is a failure.
  Each answer's code is counted apart from the request stats (so the
  latency percentiles stay honest) and printed at the end of the run.
"""

import itertools
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from locust import events
from locust.env import Environment

EXPECTED_REFUSALS = frozenset({"sold_out", "limit_exceeded", "throttled", "not_open", "paused",
                               "closed", "hold_expired", "admission_required",
                               "challenge_required"})

OUTCOMES: Counter[str] = Counter()
"""Answers by outcome code in this process ('ok' for success)."""
_ids = itertools.count()
_process = uuid.uuid4().hex[:6]


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("Stampede")
    group.add_argument("--campaign", default="loadtest", help="campaign id to claim from")
    group.add_argument("--sku", default="tee", help="SKU to claim")
    group.add_argument("--jwt-secret", default=os.environ.get("STAMPEDE_JWT_SECRET", ""),
                       help="sign user JWTs with this secret (else X-User-Id, dev auth)")
    group.add_argument("--create-campaign", action="store_true",
                       help="PUT the campaign through the admin API before the run")
    group.add_argument("--admin-url", default="",
                       help="the admin API (default: --host with the next port)")
    group.add_argument("--admin-token", default="",
                       help="an operator token (default: STAMPEDE_ADMIN_TOKENS' first "
                            "operator, else var/admin.token)")
    group.add_argument("--stock", type=int, default=500, help="units, with --create-campaign")
    group.add_argument("--per-user", type=int, default=2, help="limit, with --create-campaign")
    group.add_argument("--hold-ttl", type=int, default=600, help="seconds, with --create-campaign")
    group.add_argument("--waitlist-length", type=int, default=0,
                       help="with --create-campaign: give the SKU a waitlist this long (0: none)")
    group.add_argument("--offer-ttl", type=int, default=30,
                       help="seconds a waitlist offer stays open, with --waitlist-length")
    group.add_argument("--admission-rate", type=float, default=0.0,
                       help="with --create-campaign: a waiting room admitting this many "
                            "people per second (0: none)")
    group.add_argument("--max-fail-ratio", type=float, default=0.01,
                       help="exit non-zero above this share of failed requests")
    group.add_argument("--max-p99-ms", type=float, default=0.0,
                       help="exit non-zero if the p99 of all requests is above this (0: off)")


SPEC_HOOKS: list[Callable[[dict[str, Any], Any], None]] = []
"""Scenarios that need more than a sale (a coupon drop) amend the spec here."""


def campaign_spec(opts: Any) -> dict[str, Any]:
    """The campaign a scenario needs, from its command-line options (and SPEC_HOOKS)."""
    start = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    spec: dict[str, Any] = {
        "name": "locust rehearsal", "opens_at": start, "closes_at": end,
        "hold_ttl_s": opts.hold_ttl, "limits": {"per_user": opts.per_user},
        "skus": [{"sku": opts.sku, "price": 1999, "waves": [{"at": start, "qty": opts.stock}]}]}
    if opts.waitlist_length > 0:
        spec["waitlist"] = {"max_length": opts.waitlist_length, "offer_ttl_s": opts.offer_ttl}
    if opts.admission_rate > 0:
        rate = opts.admission_rate
        spec["waiting_room"] = {"rate_per_s": rate, "burst": max(1, int(rate)),
                                "max_active": max(10, int(rate * 30)),
                                "admission_window_s": 60, "token_ttl_s": 60}
    for hook in SPEC_HOOKS:
        hook(spec, opts)
    return spec


class SetupFailed(Exception):
    """A setup step could not do its part: the run must not start."""


def admin_url(environment: Environment) -> str:
    """--admin-url, else --host with the next port (the public API's, + 1)."""
    opts = environment.parsed_options
    if opts is not None and opts.admin_url:
        return str(opts.admin_url).rstrip("/")
    host = urlsplit(environment.host or "http://127.0.0.1:8000")
    port = (host.port or (443 if host.scheme == "https" else 80)) + 1
    return f"{host.scheme}://{host.hostname}:{port}"


def admin_token(environment: Environment) -> str:
    """--admin-token, else STAMPEDE_ADMIN_TOKENS' first operator token, else var/admin.token."""
    opts = environment.parsed_options
    if opts is not None and opts.admin_token:
        return str(opts.admin_token)
    for item in os.environ.get("STAMPEDE_ADMIN_TOKENS", "").split(","):
        role, _, token = item.strip().partition(":")
        if role == "operator" and token:
            return token
    kept = Path(os.environ.get("STAMPEDE_DATA_DIR", "var")) / "admin.token"
    return kept.read_text().strip() if kept.is_file() else ""


def admin_call(environment: Environment, method: str, path: str,
               body: dict[str, Any], ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
    """One admin API call of a setup step; SetupFailed unless it answers `ok`."""
    url = f"{admin_url(environment)}/admin/v1/{path}"
    try:
        resp = requests.request(method, url, json=body, timeout=10,
                                headers={"Authorization": f"Bearer {admin_token(environment)}"})
    except requests.RequestException as exc:
        raise SetupFailed(f"{method} {url}: {exc}") from exc
    if resp.status_code not in ok:
        raise SetupFailed(f"{method} {url}: {resp.status_code} {resp.text.strip()[:300]}")
    answer: dict[str, Any] = resp.json() if resp.content else {}
    return answer


def _create_campaign(environment: Environment) -> None:
    opts = environment.parsed_options
    if opts.create_campaign:
        admin_call(environment, "PUT", f"campaigns/{opts.campaign}", campaign_spec(opts))


SETUP_STEPS: list[Callable[[Environment], None]] = [_create_campaign]
"""Run in order before the load starts; a scenario appends its own (after the campaign's)."""


@events.init.add_listener
def _setup(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None or getattr(opts, "worker", False):  # the master (or a lone process) sets up
        return
    try:
        for step in SETUP_STEPS:
            step(environment)
    except SetupFailed as exc:
        sys.stderr.write(f"setup failed, not starting: {exc}\n")
        sys.exit(1)  # (an Exception here would be logged by locust, and the run go on)


def run_time_over(shape: Any) -> bool:
    """For a LoadTestShape's tick: has --run-time (if given) passed?"""
    opts = shape.runner.environment.parsed_options if shape.runner else None
    limit = getattr(opts, "run_time", None)
    if isinstance(limit, str):
        from locust.util.timespan import parse_timespan
        limit = parse_timespan(limit)
    return bool(limit) and shape.get_run_time() >= float(limit)


@events.quitting.add_listener
def _thresholds(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    total = environment.stats.total
    if OUTCOMES:
        print("outcomes: " + ", ".join(f"{k} {v}" for k, v in OUTCOMES.most_common()))
    if opts is None or total.num_requests == 0:
        return
    if total.fail_ratio > opts.max_fail_ratio:
        print(f"FAIL: fail ratio {total.fail_ratio:.3%} > {opts.max_fail_ratio:.3%}")
        environment.process_exit_code = 1
    p99 = total.get_response_time_percentile(0.99)
    if opts.max_p99_ms and p99 > opts.max_p99_ms:
        print(f"FAIL: p99 {p99:.0f} ms > {opts.max_p99_ms:.0f} ms")
        environment.process_exit_code = 1


def new_identity(environment: Environment) -> tuple[str, dict[str, str]]:
    """A fresh user id and the headers that authenticate it."""
    user = f"lt-{_process}-{next(_ids)}"
    secret = environment.parsed_options.jwt_secret if environment.parsed_options else ""
    if secret:
        token = jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, secret,
                           algorithm="HS256")
        return user, {"Authorization": f"Bearer {token}"}
    return user, {"X-User-Id": user}


def error_code(body: bytes | str | None) -> str:
    try:
        return str(json.loads(body or b"{}")["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "unreadable"


def judge(environment: Environment, response: Any, ok: tuple[int, ...],
          also_expected: frozenset[str] = frozenset()) -> str:
    """Mark a `catch_response` response; returns its outcome code ('ok' if in `ok`).

    `also_expected`: refusals that are normal for this one request (e.g. a
    waitlist join that finds stock again is `conflict`: claim it instead).
    """
    if response.status_code in ok:
        response.success()
        outcome = "ok"
    else:
        outcome = error_code(response.content)
        if outcome in EXPECTED_REFUSALS or outcome in also_expected:
            response.success()
        else:
            response.failure(f"{response.status_code} {outcome}")
    OUTCOMES[outcome] += 1
    return outcome
