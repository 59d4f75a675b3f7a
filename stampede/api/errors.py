"""Refusals as HTTP answers, in the JSON error shape.

Errors are `{"error": {"code": ..., "message": ...}}`; the code, status and
message of each refusal come from the one table, REFUSALS in
stampede/outcomes.py (docs/errors.md); nothing a client sends can produce a 500.
"""

import asyncio
import itertools
import math
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stampede.api.jsondepth import check_depth
from stampede.domain.models import from_ms
from stampede.errors import UnavailableError, ValidationError
from stampede.logs import log
from stampede.outcomes import REFUSALS, Outcome
from stampede.state.connection import CLUSTER_TRANSIENT


def error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
          fields: Mapping[str, Any] | None = None) -> web.Response:
    """The JSON error shape; `fields` adds to `error` (e.g. opens_at)."""
    body = orjson.dumps({"error": {"code": code, "message": message, **(fields or {})}})
    if status in (429, 503) and not (headers and "Retry-After" in headers):
        headers = {"Retry-After": RETRY_AFTER_S, **(headers or {})}
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)


RETRY_AFTER_S = "1"
"""Retry-After of the refusals that pass by themselves (unavailable, fenced, in flight)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal of REFUSALS ready to answer: status, code, message, headers, fields."""
    status: int
    code: str
    message: str
    headers: dict[str, str]
    fields: dict[str, Any]


def refused(reason: str, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None) -> Refused:
    """The refusal `reason` (a key of REFUSALS) with its message filled in from
    `params`; not_open gains opens_at and Retry-After, the passing ones Retry-After."""
    r = REFUSALS[reason]
    filled = dict(params or {})
    out_headers = dict(headers or {})
    fields: dict[str, Any] = {}
    if "opens_ms" in filled:
        filled["opens_at"] = fields["opens_at"] = from_ms(int(filled["opens_ms"])).isoformat()
    if "wait_ms" in filled:
        out_headers["Retry-After"] = str(max(1, math.ceil(int(filled["wait_ms"]) / 1000)))
    elif r.retry_after.startswith(RETRY_AFTER_S + " "):
        out_headers.setdefault("Retry-After", RETRY_AFTER_S)
    if r.status == 401:
        out_headers.setdefault("WWW-Authenticate", _challenge(reason))
    return Refused(r.status, r.code, r.message(filled), out_headers, fields)


def _challenge(reason: str) -> str:
    """RFC 6750: a bare challenge when no token came, error="invalid_token" for a bad one."""
    return 'Bearer error="invalid_token"' if reason.startswith("invalid_") else "Bearer"


def refuse(reason: str, params: Mapping[str, Any] | None = None,
           headers: Mapping[str, str] | None = None) -> web.Response:
    """The HTTP answer of the refusal `reason` (a key of REFUSALS)."""
    r = refused(reason, params, headers)
    return error(r.status, r.code, r.message, r.headers or None, r.fields or None)


def refuse_outcome(outcome: Outcome, reason: str | None = None,
                   params: Mapping[str, Any] | None = None, **context: Any) -> web.Response:
    """The answer to a domain refusal: its reason if it names one, else the outcome's
    own; `context` (campaign, sku, user, qty, ...) fills what the domain did not."""
    key = reason if reason is not None and reason in REFUSALS else outcome.reason
    return refuse(key, {**context, **(params or {})})


class ApiError(Exception):
    """Raised by handlers to answer with an error; turned into JSON by the middleware."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None,
                 fields: Mapping[str, Any] | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.fields = headers, fields
        self.close = close
        """Close the connection after the answer (what is left of the request is unread)."""

    @classmethod
    def of(cls, reason: str, **params: Any) -> "ApiError":
        """The refusal `reason` of REFUSALS, as an exception."""
        r = refused(reason, params)
        return cls(r.status, r.code, r.message, r.headers or None, r.fields or None)


BODY_TIMEOUT = web.AppKey("body_timeout_s", float)
"""Seconds a request body may take to arrive once its headers have (read_body)."""


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
        response = error(exc.status, exc.code, exc.message, exc.headers, exc.fields)
        if exc.close:
            response.force_close()
        return response
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return refuse("invalid", {"detail": str(exc)})
    except ValidationError as exc:
        return refuse("invalid", {"detail": str(exc)})
    except (UnavailableError, RedisConnectionError, RedisTimeoutError) as exc:
        return refuse("unavailable", {"detail": type(exc).__name__})
    except CLUSTER_TRANSIENT as exc:  # cluster mode: a shard failing over
        return refuse("cluster_unavailable", {"detail": type(exc).__name__})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_refusal(request, exc)
    except Exception:  # a bug, not bad input: log it with the request id, answer 500
        log.exception("unhandled error", request_id=rid, path=request.path)
        return refuse("internal", {"request_id": rid})


_MAX_SIZE = re.compile(r"size (\d+)")


def http_refusal(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route, wrong method, body too large, ...) in our shape."""
    where = {"method": request.method, "path": request.path}
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")  # RFC 9110: a 405 lists the allowed methods
        return refuse("method_not_allowed", {**where, "allow": allow}, {"Allow": allow})
    if exc.status == 404:
        return refuse("no_route", where)
    if exc.status == 413:
        size = _MAX_SIZE.search(exc.text or "")
        return refuse("body_too_large", {"limit": size.group(1) if size else "?"})
    if exc.status == 415:
        return refuse("unsupported_media_type", {"detail": exc.text or exc.reason})
    return error(exc.status, "invalid_request", exc.reason)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(data),
                        content_type="application/json")


_encoder = msgspec.json.Encoder()


async def read_body(request: web.Request) -> bytes:
    """The request body, or 400 if there is none (size is capped by the app).

    A body that does not arrive within the app's BODY_TIMEOUT answers 408 and
    closes the connection: a slow client cannot hold a handler forever."""
    if not request.can_read_body:
        raise ApiError.of("invalid", detail="a JSON body is required")
    if request.content.is_eof():  # all of it came with the headers: nothing to wait for
        return await request.read()
    limit = request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S)
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        r = refused("request_timeout", {"limit": f"{limit:g}"})
        raise ApiError(r.status, r.code, r.message, close=True) from None


DEFAULT_BODY_TIMEOUT_S = 10.0


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
