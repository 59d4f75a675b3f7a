"""The one table from engine outcomes to HTTP, and the JSON error shape.

Errors are `{"error": {"code": ..., "message": ...}}` with the stable codes
of DESIGN.md; nothing a client sends can produce a 500.
"""

import itertools
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stampede.api.jsondepth import check_depth
from stampede.errors import UnavailableError, ValidationError
from stampede.logs import log
from stampede.outcomes import Outcome

STATUS: dict[Outcome, int] = {
    Outcome.OK: 200,
    Outcome.SOLD_OUT: 409,
    Outcome.LIMIT_EXCEEDED: 409,
    Outcome.NOT_OPEN: 409,
    Outcome.PAUSED: 409,
    Outcome.CLOSED: 409,
    Outcome.NOT_FOUND: 404,
    Outcome.HOLD_EXPIRED: 409,
    Outcome.CONFLICT: 409,
    Outcome.IDEMPOTENCY_MISMATCH: 422,
    Outcome.INVALID: 400,
    Outcome.FENCED: 503,
    Outcome.ADMISSION_REQUIRED: 403,
    Outcome.WAITLIST_FULL: 409,
    Outcome.NOT_SOLD_OUT: 409,
    Outcome.THROTTLED: 429,
    Outcome.BLOCKED: 403,
    Outcome.CHALLENGE_REQUIRED: 403,
}

MESSAGES: dict[Outcome, str] = {
    Outcome.SOLD_OUT: "no units left for this SKU",
    Outcome.LIMIT_EXCEEDED: "this would take you over the campaign's per-user limit",
    Outcome.NOT_OPEN: "the campaign has not opened yet",
    Outcome.PAUSED: "the campaign is paused",
    Outcome.CLOSED: "the campaign is closed",
    Outcome.NOT_FOUND: "not found",
    Outcome.HOLD_EXPIRED: "the hold has expired",
    Outcome.CONFLICT: "the request conflicts with the current state",
    Outcome.IDEMPOTENCY_MISMATCH: "this Idempotency-Key was used with a different request",
    Outcome.INVALID: "invalid request",
    Outcome.FENCED: "the campaign is being rebuilt; retry shortly",
    Outcome.ADMISSION_REQUIRED: "this sale has a waiting room: take a ticket (POST "
                                "/v1/campaigns/{id}/queue) and claim with the admission "
                                "token you get when admitted (X-Admission-Token)",
    Outcome.WAITLIST_FULL: "the waitlist for this SKU is full",
    Outcome.NOT_SOLD_OUT: "this SKU is not sold out (units are available or a wave is "
                          "coming): claim it instead",
    Outcome.THROTTLED: "too many requests; retry after the time given",
    Outcome.BLOCKED: "this request is refused",
    Outcome.CHALLENGE_REQUIRED: "solve the challenge and send the request again",
}

RETRY_AFTER_S = "1"


def error(status: int, code: str, message: str,
          headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    if status in (429, 503):
        headers = {"Retry-After": RETRY_AFTER_S, **(headers or {})}
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)


def outcome_error(outcome: Outcome, message: str | None = None) -> web.Response:
    return error(STATUS[outcome], outcome.code, message or MESSAGES[outcome])


class ApiError(Exception):
    """Raised by handlers to answer with an error; turned into JSON by the middleware."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "invalid_request", 413: "invalid_request", 415: "invalid_request"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count()


def request_id(request: web.Request) -> str:
    """The caller's X-Request-Id if it is sane, else a new one (unique, not secret)."""
    given = request.headers.get("X-Request-Id")
    if given is not None and _REQUEST_ID.match(given):
        return given
    return f"{_ID_PREFIX}-{next(_ids):x}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    response = await _answer(request, handler, rid)
    response.headers["X-Request-Id"] = rid
    return response


async def _answer(request: web.Request, handler: Handler, rid: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, exc.code, exc.message)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return error(400, "invalid_request", str(exc))
    except ValidationError as exc:
        return error(400, "invalid_request", str(exc))
    except (UnavailableError, RedisConnectionError, RedisTimeoutError) as exc:
        return error(503, "unavailable", f"backing service unavailable: {type(exc).__name__}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "invalid_request")
        kept = {k: v for k, v in exc.headers.items() if k == "Allow"}  # RFC 9110 on 405
        return error(exc.status, code, exc.reason, headers=kept or None)
    except Exception:  # a bug, not bad input: log it with the request id, answer 500
        log.exception("unhandled error", request_id=rid, path=request.path)
        return error(500, "internal", f"internal error; request id {rid}")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(data),
                        content_type="application/json")


_encoder = msgspec.json.Encoder()


async def read_body(request: web.Request) -> bytes:
    """The request body, or 400 if there is none (size is capped by the app)."""
    if not request.can_read_body:
        raise ApiError(400, "invalid_request", "a JSON body is required")
    return await request.read()


T = TypeVar("T")


def decode(decoder: "msgspec.json.Decoder[T]", raw: bytes) -> T:
    """Decode a JSON body strictly; integral floats (2.0) count as integers.

    JSON Schema calls 2.0 an integer, so the spec promises to accept it. The
    strict decoder runs first; only a refusal pays for the second look.
    Bodies nesting deeper than MAX_DEPTH are refused before any decoding.
    """
    check_depth(raw)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError:
        obj = msgspec.json.decode(raw)
        normalized = _integral_floats(obj)
        if normalized == obj and _no_floats(obj):
            raise
        converted: T = msgspec.convert(normalized, decoder.type, strict=True)
        return converted


def _integral_floats(obj: Any) -> Any:
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {k: _integral_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_integral_floats(v) for v in obj]
    return obj


def _no_floats(obj: Any) -> bool:
    if isinstance(obj, float):
        return False
    if isinstance(obj, dict):
        return all(_no_floats(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_floats(v) for v in obj)
    return True
