"""The demo storefront, `GET /demo`: served only with STAMPEDE_DEV_AUTH=1.

A page a front-end developer copies from, built on the browser SDK
(/sdk/v1/stampede.js): countdown, waiting room, a claim that survives double
clicks and flaky networks, the challenge solved in a worker, the hold's
countdown and confirm, the waitlist, and a coupon wallet whose rotating till
code is drawn as a QR code (qrcode-generator, vendored: docs/frontend.md).
Dev auth only, because the page signs in by sending X-User-Id.
"""

import functools
from pathlib import Path

from aiohttp import web

from stampede.api.errors import refuse
from stampede.api.routing import ApiRoutes

api = ApiRoutes("frontend")

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": STATIC / "demo" / "app.js", "style.css": STATIC / "demo" / "style.css",
          "qrcode.mjs": STATIC / "vendor" / "qrcode-generator" / "qrcode.mjs"}
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
          ".html": "text/html"}


@functools.cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


@api.route("GET", "/demo", "The demo storefront (dev auth only), built on the browser SDK")
async def demo_page(request: web.Request) -> web.Response:
    return web.Response(body=_read(STATIC / "demo" / "index.html"), content_type="text/html",
                        headers={"Cache-Control": "no-cache"})


@api.route("GET", "/demo/{asset}", "The demo storefront's script, style and QR library",
           errors=(400, 404), path_params={"asset": r"^[a-z0-9-]{1,32}\.(js|mjs|css)$"})
async def demo_asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in ASSETS:
        return refuse("no_static_file", {
            "path": request.path, "detail": f"/demo/ serves {', '.join(ASSETS)}"})
    path = ASSETS[name]
    return web.Response(body=_read(path), content_type=_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache"})
