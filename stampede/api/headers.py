"""Reading a request header as text, or refusing the request.

aiohttp decodes header bytes as UTF-8 with `surrogateescape`: a byte that is
not UTF-8 (`Bearer \\xff\\xfe`) reaches a handler as a lone surrogate, which
any later `.encode()` (HMAC, JWT, a Redis argument) turns into a 500. Every
header the service reads goes through `header()`, which hands back only text
that encodes, and answers anything else with a 400 (401 for credentials)
naming the header.
"""

import hashlib

from aiohttp import web

from stampede.api.errors import ApiError

CREDENTIALS = "Authorization"


def header(request: web.Request, name: str) -> str | None:
    """The value of header `name` (None if absent); refused unless it is valid text."""
    value = request.headers.get(name)
    if value is None or value.isascii():
        return value
    try:
        value.encode()
    except UnicodeEncodeError:
        raise undecodable(name) from None
    return value


def undecodable(name: str) -> ApiError:
    """The refusal of a header whose bytes are not text."""
    if name == CREDENTIALS:
        return ApiError.of("invalid_credentials")
    return ApiError.of("undecodable_header", header=name)


CACHE_CONTROL = "public, max-age=1"
"""Short: a campaign's status changes by the second during a rush, but a crowd
polling it can share one answer per second from any cache on the way."""


def cached(request: web.Request, response: web.Response) -> web.Response:
    """`response` with an ETag of its body and a short Cache-Control; 304 with no
    body when the request's If-None-Match names that ETag (or is `*`)."""
    body = response.body
    assert isinstance(body, bytes)
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if _matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    response.headers.update(headers)
    return response


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison: W/ prefixes ignored, a list of tags, or `*`."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return any(t == "*" or t.removeprefix("W/") == etag for t in tags)
