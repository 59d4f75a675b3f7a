"""CORS for browser front-ends, as a small middleware.

Origins are allowed by name (STAMPEDE_CORS_ORIGINS, comma-separated; none by
default). A preflight (OPTIONS with Origin and Access-Control-Request-Method)
from an allowed origin is answered 204 with the methods and request headers
the app's routes use; from any other origin it is refused 403 in the JSON
error shape, without CORS headers. Other requests from an allowed origin get
Access-Control-Allow-Origin; from other origins they are served as usual and
the browser, seeing no CORS header, withholds the answer from the page.

A middleware rather than aiohttp-cors: that library wraps each route one by
one, answers a refused preflight with a text/plain 403, and knows nothing of
the route declarations this reads the methods and headers from.
"""

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from stampede.api.errors import Handler, refuse
from stampede.api.routing import Operation

BASE_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "If-None-Match",
                "Last-Event-ID", "X-Request-Id")
EXPOSED = "ETag, Retry-After, X-Request-Id, Location"
MAX_AGE_S = "600"
"""How long a browser may keep a preflight's answer."""


def parse_origins(raw: str | None) -> frozenset[str]:
    """`https://a.example,https://b.example` → the set; trailing slashes dropped."""
    return frozenset(o.strip().rstrip("/") for o in (raw or "").split(",") if o.strip())


def cors_middleware(origins: frozenset[str], operations: Iterable[Operation]) -> Middleware:
    ops = list(operations)
    methods = ", ".join(sorted({op.method for op in ops} | {"OPTIONS"}))
    headers = ", ".join([*BASE_HEADERS,
                         *sorted({h for op in ops for h in op.headers})])

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        allowed = origin.rstrip("/") in origins
        preflight = (request.method == "OPTIONS"
                     and "Access-Control-Request-Method" in request.headers)
        if preflight:
            if not allowed:
                answer = refuse("cors_origin", {"origin": origin})
                answer.headers["Vary"] = "Origin"
                return answer
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": headers,
                "Access-Control-Max-Age": MAX_AGE_S,
                "Vary": "Origin"})
        response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED
        response.headers.add("Vary", "Origin")
        return response

    return cors
