"""Reading a request header as text, or refusing the request.

aiohttp decodes header bytes as UTF-8 with `surrogateescape`: a byte that is
not UTF-8 (`Bearer \\xff\\xfe`) reaches a handler as a lone surrogate, which
any later `.encode()` (HMAC, JWT, a Redis argument) turns into a 500. Every
header the service reads goes through `header()`, which hands back only text
that encodes, and answers anything else with a 400 (401 for credentials)
naming the header.
"""

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
