"""The two aiohttp applications: public (/v1) and admin (/admin/v1).

They share one Engine but never a listener: admin routes do not exist on
the public port. Each serves its own /openapi.json and /docs.
"""

from aiohttp import web
from aiohttp.typedefs import Middleware

from stampede import Engine
from stampede.api import (
    admin,
    console,
    console_feed,
    coupon_rules,
    coupons,
    demo,
    docs,
    grants,
    guard,
    live,
    lookups,
    presale,
    public,
    queues,
    refunds,
    sdk,
    tickets,
    transfers,
    webhooks,
)
from stampede.api.auth import Authenticator
from stampede.api.context import AUTH, DETAILS, ENGINE, GUARD, READY, STORE_CHECK
from stampede.api.cors import cors_middleware, parse_origins
from stampede.api.errors import BODY_TIMEOUT, error_middleware, json_response
from stampede.api.healing import healing_middleware
from stampede.api.idempotency import IdempotencyGuard
from stampede.api.metrics import metrics_handler, metrics_middleware
from stampede.api.openapi import build_spec
from stampede.api.routing import ApiRoutes
from stampede.api.webhook_spec import webhooks_spec
from stampede.domain.models import Health, Readiness
from stampede.metrics import observe_script, scrape_registry
from stampede.state.idempotency import ResponseMemory

health = ApiRoutes("health")
PUBLIC_TITLE = "Stampede public API"


@health.route("GET", "/healthz", "The process is alive", response=Health)
async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


@health.route("GET", "/readyz", "Ready for traffic: Redis reachable, scripts loaded, "
              "not draining", response=Readiness, errors=(503,))
async def readyz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    ready = request.app[READY]
    checks = {"not_draining": not ready["draining"],
              "scripts": engine.scripts.loaded, "redis": False}
    if "healing" in ready:  # the embedded Valkey came back: not until it is healed
        checks["state_healed"] = not ready["healing"]
    try:
        checks["redis"] = bool(await engine.redis.ping())
    except Exception:  # any failure to reach Redis means not ready
        checks["redis"] = False
    store_check = request.app.get(STORE_CHECK)
    if store_check is not None:
        checks["store"] = await store_check()  # type: ignore[operator]
    ok = all(checks.values())
    details = request.app.get(DETAILS) or {}
    return json_response(Readiness(ready=ok, checks=checks, details=details),
                         status=200 if ok else 503)


def _make_app(title: str, routes: list[ApiRoutes], engine: Engine, auth: Authenticator,
              ready: dict[str, bool], max_body: int, metrics: bool) -> web.Application:
    middlewares: list[Middleware] = ([metrics_middleware, error_middleware] if metrics
                                     else [error_middleware])
    middlewares.append(healing_middleware)
    if title == PUBLIC_TITLE and engine.settings.gateway_rate_per_s:
        middlewares.append(guard.limiter_middleware)
    operations = [op for r in (health, *routes) for op in r.operations]
    origins = parse_origins(engine.settings.cors_origins)
    if title == PUBLIC_TITLE:  # with no origins configured, every preflight is refused
        # Outside the error middleware, so refusals carry the CORS headers too.
        middlewares.insert(middlewares.index(error_middleware),
                           cors_middleware(origins, operations))
    app = web.Application(middlewares=middlewares, client_max_size=max_body)
    app[ENGINE] = engine
    app[AUTH] = auth
    app[READY] = ready
    app[BODY_TIMEOUT] = float(engine.settings.body_timeout_s)
    app[GUARD] = IdempotencyGuard(ResponseMemory(engine.redis,
                                                 engine.settings.idempotency_ttl_s))
    if metrics:
        engine.scripts.observer = observe_script
    for r in (health, *routes):
        r.add_to(app)
    if live.api in routes:
        live.install(app, engine)
    if console_feed.api in routes:
        console_feed.install(app, engine)
    # The admin document also describes what webhook endpoints receive.
    spec = build_spec(title, operations, auth.dev_auth,
                      webhooks_spec() if webhooks.api in routes else None)

    async def openapi(request: web.Request) -> web.Response:
        return json_response(spec)

    app.router.add_get("/openapi.json", openapi)
    docs.install(app, title)
    # Stock, holds and coupon budgets are not public: /metrics is the admin listener's,
    # and the public one's only when STAMPEDE_PUBLIC_METRICS asks for it.
    if title != PUBLIC_TITLE or engine.settings.public_metrics:
        registry = scrape_registry(engine.settings.metrics_multiprocess_dir)
        app.router.add_get("/metrics", metrics_handler(registry))
    return app


PUBLIC_ROUTES = (public.api, live.api, queues.api, guard.api, coupons.api, coupon_rules.api,
                 sdk.api, refunds.api, tickets.api, transfers.api)
"""The public listener's routes (besides health); `stampede.api.clientgen` builds the
clients' spec from the same list."""


def make_public_app(engine: Engine, auth: Authenticator, ready: dict[str, bool],
                    max_body: int = 16_384, metrics: bool = True) -> web.Application:
    routes = [*PUBLIC_ROUTES, lookups.api]
    if auth.dev_auth:
        routes.append(demo.api)
    return _make_app(PUBLIC_TITLE, routes, engine, auth, ready, max_body, metrics)


def make_admin_app(engine: Engine, auth: Authenticator, ready: dict[str, bool],
                   max_body: int = 262_144, metrics: bool = True) -> web.Application:
    return _make_app("Stampede admin API", [admin.api, coupons.admin_api, coupon_rules.admin_api,
                                             webhooks.api, refunds.admin_api, tickets.admin_api,
                                             grants.admin_api, presale.admin_api, console.api,
                                             console_feed.api, lookups.admin_api],
                     engine, auth, ready, max_body, metrics)
