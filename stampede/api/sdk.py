"""The browser SDK, served at a versioned path: `GET /sdk/v1/{file}`.

stampede.js is a plain ES module (no build step): import it from the service
(`import { Stampede } from "/sdk/v1/stampede.js"`) or from clients/js/ with a
bundler. stampede.d.ts types it, api.d.ts holds the types generated from the
OpenAPI document (openapi-typescript), codes.js the stable error codes, and
pow-worker.js solves proof-of-work challenges off the main thread.
"""

import functools
from pathlib import Path

from aiohttp import web

from stampede.api.errors import refuse
from stampede.api.routing import ApiRoutes

api = ApiRoutes("frontend")

SDK = Path(__file__).parent / "static" / "sdk"
FILES = ("stampede.js", "stampede.d.ts", "pow-worker.js", "codes.js", "codes.d.ts", "api.d.ts")
"""What /sdk/v1/ serves (and clients/js/ holds copies of)."""
_TYPES = {".js": "text/javascript", ".ts": "application/typescript"}


@functools.cache
def _read(name: str) -> bytes:
    return (SDK / name).read_bytes()


@api.route("GET", "/sdk/v1/{file}", "The browser SDK (ES module, worker and type definitions)",
           errors=(400, 404), path_params={"file": r"^[a-z0-9-]{1,32}\.(js|d\.ts)$"})
async def sdk_file(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name not in FILES:
        return refuse("no_static_file", {
            "path": request.path, "detail": f"/sdk/v1/ serves {', '.join(FILES)}"})
    return web.Response(body=_read(name), content_type=_TYPES[Path(name).suffix],
                        headers={"Cache-Control": "public, max-age=300"})
