"""The ops console: a page at `GET /` of the admin listener, and who the caller is.

The page and its assets ship in the package (stampede/api/static/console/):
plain ES modules and CSS, no build step, nothing fetched from elsewhere, so it
works offline. Assets are served under `/console/<version>/<name>`, the
version being a hash of their contents: a browser may keep them forever, and
a new release is a new path.

The page reads and acts only through the admin API with the token the
operator signs in with (kept in sessionStorage), so every action lands in
the events with its actor, and a viewer's token is refused by the API
whatever the page shows.
"""

import hashlib
from pathlib import Path

import msgspec
from aiohttp import web

from stampede.api.context import ADMIN
from stampede.api.errors import ApiError, json_response
from stampede.api.routing import ApiRoutes

api = ApiRoutes("console")

_DIR = Path(__file__).parent / "static" / "console"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
_ASSETS: dict[str, tuple[bytes, str]] = {
    p.name: (p.read_bytes(), _TYPES[p.suffix]) for p in sorted(_DIR.iterdir())
    if p.suffix in _TYPES}
VERSION = hashlib.sha256(b"".join(body for body, _ in _ASSETS.values())).hexdigest()[:12]
"""Of the assets' contents: a changed asset is a new URL."""
ASSET_PREFIX = f"/console/{VERSION}/"
_PAGE = (_DIR / "index.html").read_text().replace("{{ASSETS}}", ASSET_PREFIX).encode()
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class Me(msgspec.Struct, kw_only=True):
    name: str
    """The token's name (`<role>-<n>`): the actor the events record."""
    role: str
    """viewer (reads) or operator (reads and acts)."""


@api.route("GET", "/", "The ops console (HTML): live campaigns, coupon drops and system, "
           "controls, lookups and exports; sign in with an admin token",
           media_type="text/html")
async def console_page(request: web.Request) -> web.Response:
    return web.Response(body=_PAGE, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache",
                                 "Content-Security-Policy": _CSP,
                                 "X-Frame-Options": "DENY",
                                 "Referrer-Policy": "no-referrer"})


_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
"""Everything from this listener only: a console that works offline needs nothing else."""


@api.route("GET", "/console/{version}/{name}", "A console asset (JavaScript, CSS, licence)",
           errors=(400, 404), path_params={"version": r"^[0-9a-f]{12}$", "name": _NAME})
async def console_asset(request: web.Request) -> web.Response:
    version, name = request.match_info["version"], request.match_info["name"]
    found = _ASSETS.get(name)
    if version != VERSION or found is None:
        raise ApiError.of("no_console_asset", path=request.path)
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


@api.route("GET", "/admin/v1/me", "Who this admin token is: its name and role (the console "
           "disables its controls for a viewer)", auth="viewer", response=Me,
           errors=(401, 503))
async def me(request: web.Request) -> web.Response:
    token = request[ADMIN]
    return json_response(Me(name=token.name, role=token.role.value))
