"""Prometheus metrics. No user ids or codes as labels: cardinality stays bounded.

With several workers the master sets PROMETHEUS_MULTIPROC_DIR before they
start; each worker then writes its samples to files there and /metrics
aggregates them (prometheus_client's multiprocess mode).
"""

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from stampede import Engine
from stampede.outcomes import Outcome

# Sub-millisecond buckets: a claim answered from one batched script call
# takes a fraction of a millisecond; the tail is what matters.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5)

HTTP_REQUESTS = Counter("stampede_http_requests_total", "HTTP requests",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("stampede_http_request_seconds", "HTTP request latency",
                         ["route", "method"], buckets=LATENCY_BUCKETS)
CLAIMS = Counter("stampede_claims_total", "Claim answers by outcome", ["outcome"])
SCRIPT_LATENCY = Histogram("stampede_redis_script_seconds", "Lua script round trip",
                           ["script"], buckets=LATENCY_BUCKETS)
STOCK = Gauge("stampede_stock_units", "Units per SKU by state",
              ["campaign", "sku", "state"], multiprocess_mode="livemostrecent")
HOLDS = Gauge("stampede_holds_units", "Units held (not yet confirmed) per campaign",
              ["campaign"], multiprocess_mode="livemostrecent")
PERSISTER_LAG = Gauge("stampede_persister_lag_seconds",
                      "Age of the oldest event not yet persisted", ["campaign"],
                      multiprocess_mode="livemostrecent")
PERSISTER_PENDING = Gauge("stampede_persister_pending_events",
                          "Events delivered to the persister and not yet acknowledged",
                          ["campaign"], multiprocess_mode="livemostrecent")

REFUSALS = Counter("stampede_refusals_total", "Claims the scalper guard refused",
                   ["reason", "scope"])
"""reason: throttled, blocked, challenge_required; scope: the limit, list or rule."""
LIMITER_FAIL_OPEN = Counter("stampede_limiter_fail_open_total",
                            "Gateway limiter checks skipped because Redis was unreachable")

_OUTCOME_NAMES = {o: o.code if o is not Outcome.OK else "held" for o in Outcome}


_CLAIM_CHILDREN = {o: CLAIMS.labels(name) for o, name in _OUTCOME_NAMES.items()}


def count_claim(outcome: Outcome) -> None:
    _CLAIM_CHILDREN[outcome].inc()


def count_refusal(outcome: Outcome, scope: str | None) -> None:
    REFUSALS.labels(outcome.code, scope or "").inc()  # scopes are a small fixed set


def count_limiter_fail_open() -> None:
    LIMITER_FAIL_OPEN.inc()


def observe_script(name: str, seconds: float) -> None:
    SCRIPT_LATENCY.labels(name).observe(seconds)


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


async def metrics_handler(request: web.Request) -> web.Response:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(DEFAULT_REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def refresh_gauges(engine: Engine) -> None:
    """Stock and holds per campaign and SKU, read from Redis (a housekeeping tick)."""
    for cid in await engine.campaign_ids():
        stats = await engine.stats(cid)
        if stats is None:
            continue
        for s in stats.skus:
            for state, value in (("available", s.available), ("held", s.held),
                                 ("sold", s.sold), ("released", s.released)):
                STOCK.labels(cid, s.sku, state).set(value)
        HOLDS.labels(cid).set(sum(s.held for s in stats.skus))
    from stampede.api.coupons import refresh_coupon_gauges  # lazy: an import cycle
    await refresh_coupon_gauges(engine)


# -- the supervised runtime (runtime/supervisor.py, runtime/health.py) ---------
RESTARTS = Counter("stampede_restarts_total",
                   "Child processes serve restarted after they died", ["component"])
"""component: persister, valkey (the embedded one)."""
CRASH_LOOPS = Counter("stampede_crash_loops_total",
                      "Children left down after dying too often (the crash-loop limit)",
                      ["component"])
PERSISTER_STALLED = Gauge("stampede_persister_stalled",
                          "1 while events wait longer than STAMPEDE_PERSIST_STALL_S for the "
                          "store, or the persister is down", multiprocess_mode="livemax")
CAMPAIGNS_HEALED = Counter("stampede_campaigns_healed_total",
                           "Campaigns rebuilt from the store because Redis was behind")
