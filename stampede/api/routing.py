"""Routes that describe themselves: one declaration feeds aiohttp, the checks and OpenAPI.

Each handler is declared once with its method, path, auth, path and query
patterns, request and response types and the errors it can answer. The
router applies the declaration before the handler runs:

    path parameter off its pattern → 400 invalid_request
    caller not admitted by `auth`  → 401 unauthorized / 403 forbidden
    query parameter off its pattern, or a required one missing → 400 invalid_request

and hands the handler its caller (`USER`, `ADMIN` or `MERCHANT` on the
request). `stampede.api.openapi` turns the same declarations into the spec,
so neither the checks nor the documentation can drift from the code.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from stampede.api.audit import audited
from stampede.api.auth import Role, bearer
from stampede.api.context import ADMIN, AUTH, ENGINE, MERCHANT, SCANNER, USER
from stampede.api.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["none", "user", "viewer", "operator", "merchant", "scanner"]

# Path parameters shared by the route modules: name -> pattern (the ids of stampede.state.keys).
CID = {"cid": r"^[a-z0-9][a-z0-9_-]{0,63}$"}
SKU_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
SKU = {"sku": SKU_PATTERN}

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ROLES = {"viewer": Role.VIEWER, "operator": Role.OPERATOR}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    handler: Handler
    auth: Auth = "none"
    body: Any = None
    response: Any = None
    status: int = 200
    also: tuple[int, ...] = ()
    """Other success statuses with the same response (e.g. 200 for a replacement)."""
    errors: tuple[int, ...] = ()
    idempotent: bool = False
    """Takes an Idempotency-Key header."""
    tags: tuple[str, ...] = ()
    path_params: dict[str, str] = field(default_factory=dict)
    """Name -> regex pattern of each path parameter."""
    query_params: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """Name -> (regex pattern, required) of each query parameter."""
    headers: dict[str, str] = field(default_factory=dict)
    """Name -> description of each optional request header (besides Idempotency-Key)."""
    media_type: str = "application/json"
    """Of the success answer (text/event-stream: a stream of `response` as events)."""
    exports: tuple[str, ...] = ()
    """Other media types the success answer takes when asked (a streamed export)."""
    audit: Literal["log", "event", "none"] = "log"
    """An admin operation that is not a GET: its success is written to the audit log
    ("log", api/audit.py), or its event is the record ("event"), or it changes no
    state ("none")."""

    def __post_init__(self) -> None:
        named = set(_PLACEHOLDER.findall(self.path))
        if named != set(self.path_params):
            raise ValueError(f"{self.method} {self.path}: path_params {sorted(self.path_params)} "
                             f"must give a pattern for exactly {sorted(named)}")


class ApiRoutes:
    """A route table that also records each operation for the OpenAPI spec."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, summary: str, **meta: Any
              ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.operations.append(Operation(method, path, summary, handler,
                                             tags=(self.tag,), **meta))
            return handler
        return register

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, enforced(op), name=op.handler.__name__)


def enforced(op: Operation) -> Handler:
    """`op.handler`, behind the checks its declaration asks for."""
    paths = {name: re.compile(pattern) for name, pattern in op.path_params.items()}
    queries = {name: (re.compile(pattern), required)
               for name, (pattern, required) in op.query_params.items()}
    admit = _admitter(op.auth)
    logged = op.auth in _ROLES and op.method != "GET" and op.audit == "log"
    route = f"{op.method} {op.path}"

    async def handler(request: web.Request) -> web.StreamResponse:
        for name, pattern in paths.items():
            if not pattern.fullmatch(request.match_info[name]):
                raise ApiError.of("invalid",
                                  detail=f"the path's {name} must match {pattern.pattern}")
        await admit(request)
        for name, (pattern, required) in queries.items():
            _check_query(request, name, pattern, required)
        response = await op.handler(request)
        if logged:
            await audited(request, route, response)
        return response

    handler.__name__ = op.handler.__name__
    handler.__doc__ = op.handler.__doc__
    return handler


def _check_query(request: web.Request, name: str, pattern: re.Pattern[str],
                 required: bool) -> None:
    value = request.query.get(name)
    if value is None:
        if required:
            raise ApiError.of("invalid", detail=f"the {name} query parameter is required")
    elif not pattern.fullmatch(value):
        raise ApiError.of("invalid", detail=f"{name} must match {pattern.pattern}")


Admit = Callable[[web.Request], Awaitable[None]]


def _admitter(auth: Auth) -> Admit:
    """Authenticates the caller as `auth` says and puts it on the request, or raises 401/403."""
    if auth == "user":
        return _user
    if auth == "merchant":
        return _merchant
    if auth == "scanner":
        return _scanner
    if auth in _ROLES:
        return _admin(_ROLES[auth])
    return _anyone


async def _anyone(request: web.Request) -> None:
    return None


async def _user(request: web.Request) -> None:
    request[USER] = request.app[AUTH].user(request)


def _admin(needs: Role) -> Admit:
    async def admit(request: web.Request) -> None:
        request[ADMIN] = request.app[AUTH].admin(request, needs)
    return admit


async def _merchant(request: web.Request) -> None:
    token = bearer(request)
    if not token:
        raise ApiError.of("missing_merchant_token")
    found = await request.app[ENGINE].coupons.merchant(token)
    if found is None:
        raise ApiError.of("invalid_merchant_token")
    request[MERCHANT] = found


async def _scanner(request: web.Request) -> None:
    token = bearer(request)
    if not token:
        raise ApiError.of("missing_scanner_token")
    found = await request.app[ENGINE].tickets.scanner(token)
    if found is None:
        raise ApiError.of("invalid_scanner_token")
    request[SCANNER] = found
