"""The HTTP ceiling: the claim endpoint with nothing behind it.

Parses the JSON body and the user header and answers 201 with a claim-shaped
body, so that the per-request cost of aiohttp + uvloop + orjson is all there
is. Nothing is stored.

    python -m bench.baselines.bare_http --port 8080 [--workers N]
"""

from __future__ import annotations

import argparse
import secrets
from datetime import UTC, datetime, timedelta

import orjson
from aiohttp import web

from bench.baselines import add_server_args, serve

_HOLD = timedelta(seconds=600)


def _bad(message: str) -> web.Response:
    return web.Response(status=400, content_type="application/json",
                        body=orjson.dumps({"error": {"code": "invalid_request",
                                                     "message": message}}))


async def claim(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _bad("body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("sku"), str):
        return _bad("sku is required")
    _ = request.headers.get("X-User-Id")  # read it as the real gateway would
    expires = datetime.now(UTC) + _HOLD
    return web.Response(status=201, content_type="application/json", body=orjson.dumps({
        "claim_id": secrets.token_hex(12), "status": "held",
        "expires_at": expires.isoformat(timespec="milliseconds")}))


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(_args: argparse.Namespace | None = None) -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/campaigns/{cid}/claims", claim)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_args(parser)
    serve(make_app, parser.parse_args(argv))


if __name__ == "__main__":
    main()
