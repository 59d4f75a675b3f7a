"""The naive claim service: Stampede's own claim rules, one EVALSHA per request.

Same Lua script and checks as the gateway (stock, per-user limit, campaign
state, idempotency), but each request makes its own round trip to Redis: no
batching, no engine around it, the way a first version would be written.
The user is the X-User-Id header, or with `--jwt-secret` the subject of an
HS256 bearer token, verified by PyJWT on every request (what such a service
would do; the like-for-like row beside Stampede's JWT auth).

    python -m bench.baselines.naive_claims --port 8081 --redis-url redis://... [--jwt-secret S]
"""

from __future__ import annotations

import argparse

import jwt
import orjson
from aiohttp import web

from bench.baselines import add_server_args, serve
from stampede import Engine, Outcome, Settings
from stampede.state import keys

ENGINE = web.AppKey("engine", Engine)
JWT_SECRET = web.AppKey("jwt_secret", str)


def _answer(status: int, code: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=orjson.dumps({"error": {"code": code, "message": code}}))


async def claim(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
        sku, qty = body["sku"], int(body.get("qty", 1))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return _answer(400, "invalid_request")
    secret = request.app.get(JWT_SECRET)
    if secret:
        _scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            user = str(jwt.decode(token, secret, algorithms=["HS256"],
                                  options={"require": ["sub"]})["sub"])
        except jwt.PyJWTError:
            return _answer(401, "unauthorized")
    else:
        user = request.headers.get("X-User-Id", "")
    if not keys.valid_user_id(user) or not keys.valid_sku(sku):
        return _answer(400, "invalid_request")
    result = await request.app[ENGINE].claim_unbatched(request.match_info["cid"], user, sku, qty)
    if result.outcome is not Outcome.OK or result.claim is None:
        return _answer(409 if result.outcome is not Outcome.NOT_FOUND else 404,
                       result.outcome.code)
    return web.Response(status=201, content_type="application/json", body=orjson.dumps({
        "claim_id": result.claim.claim_id, "status": "held",
        "expires_at": result.claim.expires_at.isoformat()}))


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()

    async def engine_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        engine = Engine.from_url(args.redis_url, Settings())
        await engine.start()
        app[ENGINE] = engine
        yield
        await engine.close()

    app.cleanup_ctx.append(engine_ctx)
    if args.jwt_secret:
        app[JWT_SECRET] = args.jwt_secret
    app.router.add_post("/v1/campaigns/{cid}/claims", claim)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_args(parser)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jwt-secret", default="",
                        help="users from HS256 bearer tokens (PyJWT) instead of X-User-Id")
    serve(make_app, parser.parse_args(argv))


if __name__ == "__main__":
    main()
