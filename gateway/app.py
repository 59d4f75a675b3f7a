"""The two aiohttp applications: public (/v1) and admin (/admin/v1).

They share one Engine but never a listener: admin routes do not exist on
the public port.
"""

from aiohttp import web

from engine import Engine
from gateway import admin, public
from gateway.auth import Authenticator
from gateway.context import AUTH, ENGINE, READY
from gateway.errors import error_middleware, json_response

health = web.RouteTableDef()


@health.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@health.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    checks = {"draining": not request.app[READY]["draining"],
              "scripts": engine.scripts.loaded, "redis": False}
    try:
        checks["redis"] = bool(await engine.redis.ping())
    except Exception:  # any failure to reach Redis means not ready
        checks["redis"] = False
    ok = all(checks.values())
    return json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


def _base_app(engine: Engine, auth: Authenticator, ready: dict[str, bool],
              max_body: int) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body)
    app[ENGINE] = engine
    app[AUTH] = auth
    app[READY] = ready
    app.add_routes(health)
    return app


def make_public_app(engine: Engine, auth: Authenticator, ready: dict[str, bool],
                    max_body: int = 16_384) -> web.Application:
    app = _base_app(engine, auth, ready, max_body)
    app.add_routes(public.routes)
    return app


def make_admin_app(engine: Engine, auth: Authenticator, ready: dict[str, bool],
                   max_body: int = 262_144) -> web.Application:
    app = _base_app(engine, auth, ready, max_body)
    app.add_routes(admin.routes)
    return app
