"""The API docs page: Swagger UI (vendored, served offline) rendering /openapi.json.

Swagger UI's files are copied from the `swagger-ui-dist` npm package into
static/vendor/swagger-ui (version and licence in docs/frontend.md) and served
under /docs/assets/; the page loads nothing from elsewhere, and the online
validator badge is switched off (it would send the spec out).
"""

import functools
from collections.abc import Awaitable, Callable
from html import escape
from pathlib import Path

from aiohttp import web

ASSETS = Path(__file__).parent / "static" / "vendor" / "swagger-ui"
_INIT = """window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "openapi.json", dom_id: "#swagger-ui", validatorUrl: null,
    deepLinking: true, tryItOutEnabled: false, displayRequestDuration: true,
  });
});
"""
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/init.js"></script>
</body></html>
"""
_TYPES = {".js": "text/javascript", ".css": "text/css"}


def page(title: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = _PAGE.format(title=escape(title))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    return handler


async def asset(request: web.Request) -> web.Response:
    """One of Swagger UI's files (or the page's init script); 404 for anything else."""
    name = request.match_info["name"]
    if name == "init.js":
        return web.Response(text=_INIT, content_type="text/javascript")
    path = ASSETS / name
    if "/" in name or path.suffix not in _TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=_read(path), content_type=_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=86400"})


@functools.cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def install(app: web.Application, title: str) -> None:
    app.router.add_get("/docs", page(title))
    app.router.add_get("/docs/assets/{name}", asset)
