"""What the gateway tells the scalper guard, and how its refusals look.

- `client_signals`: device (X-Device-Id), network (/24 or /64 of the socket
  peer, or of X-Forwarded-For behind a trusted proxy), account age (the
  token's `created_at` claim), a challenge solution (X-Challenge-Token and
  X-Challenge-Solution). The claim script does the checking.
- `refusal`: 429 throttled with an exact Retry-After, 403 blocked, 403
  challenge_required with the challenge to solve; `guard_answer` counts a
  guard refusal of a claim (sale or coupon) and answers it, in one place.
- `limiter_middleware`: a per-network GCRA limit on the public routes other
  than claims (sale and coupon claims are limited inside their own script). It
  fails open: if Redis is unreachable for it, the request goes on (a claim
  itself then fails closed with 503).
- `GET /v1/pow-solver.js`: the front-ends' solver.
"""

import functools
import hashlib
import math
import re
from pathlib import Path
from typing import Protocol

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from stampede.api.context import ENGINE, USER
from stampede.api.errors import Handler
from stampede.api.headers import header
from stampede.api.memo import Memo
from stampede.api.routing import ApiRoutes
from stampede.domain import netaddr, presale_codes
from stampede.domain.engine import ClaimResult
from stampede.domain.throttle import DEVICE_PATTERN, ChallengeView, ClientSignals
from stampede.logs import log
from stampede.metrics import count_limiter_fail_open, count_refusal
from stampede.outcomes import GUARD_REFUSALS, REFUSALS, Outcome
from stampede.state import keys

api = ApiRoutes("throttle")

HEADERS = {
    "X-Device-Id": "a client fingerprint: limits and distinct-account counts per device",
    "X-Challenge-Token": "after a 403 challenge_required: the challenge's token",
    "X-Challenge-Solution": "its solution (a decimal counter; see /v1/pow-solver.js)",
}
_DEVICE = re.compile(DEVICE_PATTERN)
_CLAIM_ROUTES = frozenset({"/v1/campaigns/{cid}/claims", "/v1/campaigns/{cid}/coupons"})
"""Sale and coupon claims: throttled by the guard in their own script, not the limiter."""
_SOLVER = Path(__file__).parent / "static" / "pow-solver.js"

@functools.lru_cache(maxsize=8)
def _trusted(spec: str) -> list[netaddr.Network]:
    return netaddr.parse_networks(spec)


def client_network(request: web.Request) -> str:
    """The /24 or /64 of the client (X-Forwarded-For only from a trusted proxy)."""
    key = (request.remote, header(request, "X-Forwarded-For"),
           request.app[ENGINE].settings.trusted_proxies or "")
    if key[1] is not None and len(key[1]) > _KEPT_FORWARDED:
        return _network(key)  # the client writes this header: only short ones are kept
    return _networks(key)


def _network(of: tuple[str | None, str | None, str]) -> str:
    peer, forwarded_for, trusted = of
    address = netaddr.client_address(peer, forwarded_for, _trusted(trusted))
    return netaddr.network_of(address) if address else "unknown"


_KEPT_FORWARDED = 128
"""Longest X-Forwarded-For kept with its answer (a few proxies' addresses): the memo's
memory stays bounded whatever clients send."""
_networks = Memo(_network, 65_536)
"""Kept per (peer, X-Forwarded-For, proxies): parsing addresses with `ipaddress` was
~4% of a claim's CPU, and a keep-alive client sends every request from one peer."""


def client_signals(request: web.Request) -> ClientSignals:
    device = header(request, "X-Device-Id") or ""
    if device and not _DEVICE.match(device):  # any fingerprint: a digest of an odd one
        device = "h-" + hashlib.sha256(device.encode()).hexdigest()[:40]
    return ClientSignals(device=device, network=client_network(request),
                         account_age_s=request[USER].account_age_s,
                         challenge=header(request, "X-Challenge-Token"),
                         solution=header(request, "X-Challenge-Solution"))


class GuardRefusal(Protocol):
    """What the engine answers a refused claim: a sale's ClaimResult, a coupon's Answer."""
    @property
    def outcome(self) -> Outcome: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def retry_after_ms(self) -> int | None: ...
    @property
    def challenge(self) -> ChallengeView | None: ...


def guard_answer(result: GuardRefusal) -> web.Response | None:
    """The answer to a claim the guard refused, counted in the refusal metrics; else None."""
    if result.outcome not in GUARD_REFUSALS:
        return None
    count_refusal(result.outcome, result.reason)
    return refusal(result)


def refusal(result: GuardRefusal) -> web.Response:
    """The answer to a guard refusal (THROTTLED, BLOCKED, CHALLENGE_REQUIRED)."""
    outcome = result.outcome
    ms = result.retry_after_ms or 0
    r = REFUSALS[outcome.reason]
    message = r.message({"scope": result.reason or "?", "retry_after_ms": ms})
    if outcome is Outcome.THROTTLED:  # a presale code's limiters name their key and limit
        message = presale_codes.throttled_message(result.reason or "", ms) or message
    err: dict[str, object] = {"code": r.code, "message": message, "reason": result.reason}
    headers = {}
    if outcome is Outcome.THROTTLED:
        err["retry_after_ms"] = ms
        headers["Retry-After"] = str(max(1, math.ceil(ms / 1000)))
    elif result.challenge is not None:
        ch = result.challenge
        err["challenge"] = {"token": ch.token, "difficulty": ch.difficulty,
                            "expires_at": ch.expires_at.isoformat(),
                            "algorithm": "sha256(token + ':' + counter) has `difficulty` "
                                         "leading zero bits"}
    return web.Response(status=r.status, body=orjson.dumps({"error": err}),
                        content_type="application/json", headers=headers)


def _is_claim(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in _CLAIM_ROUTES


@web.middleware
async def limiter_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    engine = request.app[ENGINE]
    rate = engine.settings.gateway_rate_per_s
    if not rate or request.method == "GET" and request.path in ("/healthz", "/readyz",
                                                                "/metrics") \
            or _is_claim(request):
        return await handler(request)
    ks = keys.gateway_limiter_keys(client_network(request))
    try:
        allowed, retry = await engine.scripts.run(
            "throttle", ks, [max(1, round(1000 / rate)), engine.settings.gateway_burst])
    except (RedisError, OSError) as exc:  # fail open: the limiter alone is down
        count_limiter_fail_open()
        log.warning("gateway limiter unavailable; failing open", error=type(exc).__name__)
        return await handler(request)
    if not allowed:
        count_refusal(Outcome.THROTTLED, "gateway")
        return refusal(ClaimResult(Outcome.THROTTLED, reason="gateway",
                                   retry_after_ms=int(retry)))
    return await handler(request)


@api.route("GET", "/v1/pow-solver.js", "The proof-of-work solver for front-ends (JavaScript)")
async def pow_solver(request: web.Request) -> web.Response:
    return web.Response(body=_SOLVER.read_bytes(), content_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=3600"})
