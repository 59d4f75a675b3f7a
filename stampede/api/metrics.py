"""The gateway's side of the metrics: the per-request middleware and /metrics.

The metrics themselves are all defined in `stampede.metrics`.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from stampede.metrics import HTTP_LATENCY, HTTP_REQUESTS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "unmatched"
        counter, histogram = _children(template, request.method, status)
        counter.inc()
        histogram.observe(time.perf_counter() - started)


_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _children(template: str, method: str, status: int) -> tuple[Any, Any]:
    """Label lookups cost ~1 µs each; the set of label values is small, so keep them."""
    key = (template, method, status)
    found = _CHILDREN.get(key)
    if found is None:
        found = (HTTP_REQUESTS.labels(template, method, str(status)),
                 HTTP_LATENCY.labels(template, method))
        _CHILDREN[key] = found
    return found


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """GET /metrics exposing `registry` (chosen once, when the app is built)."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})
    return handler
