"""Routes that describe themselves: one registration feeds aiohttp and OpenAPI.

Each handler is declared once with its method, path, request and response
types and the errors it can answer; `stampede.api.openapi` turns the same
declarations into the spec, so the documentation cannot drift from the code.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["none", "user", "viewer", "operator", "merchant"]

# Path parameters shared by the route modules: name -> pattern (the ids of stampede.state.keys).
CID = {"cid": r"^[a-z0-9][a-z0-9_-]{0,63}$"}
SKU_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
SKU = {"sku": SKU_PATTERN}


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
            app.router.add_route(op.method, op.path, op.handler, name=op.handler.__name__)
