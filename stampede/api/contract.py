"""The public contract as a page: every route of both listeners, from the same
declarations the router enforces and the OpenAPI document is built from.

`python -m stampede.api.contract > docs/contract.md` writes it; a test fails
when the page and the declarations part.
"""

from stampede.api import (
    admin,
    coupon_rules,
    coupons,
    demo,
    grants,
    lookups,
    presale,
    refunds,
    tickets,
    webhooks,
)
from stampede.api.app import PUBLIC_ROUTES, health
from stampede.api.openapi import enforced_errors
from stampede.api.routing import ApiRoutes, Operation

LISTENERS: tuple[tuple[str, str, tuple[ApiRoutes, ...]], ...] = (
    ("Public API", "`:8000`", (health, *PUBLIC_ROUTES, lookups.api)),
    ("Public API, dev auth only (STAMPEDE_DEV_AUTH=1)", "`:8000`", (demo.api,)),
    ("Admin API", "`:8001`", (health, admin.api, coupons.admin_api, coupon_rules.admin_api,
                              webhooks.api, refunds.admin_api, tickets.admin_api,
                              grants.admin_api, presale.admin_api, lookups.admin_api)),
)

_AUTH = {
    "none": "anyone",
    "user": "user (`Authorization: Bearer <JWT>`)",
    "viewer": "admin token, `viewer` or `operator`",
    "operator": "admin token, `operator`",
    "merchant": "merchant token",
    "scanner": "scanner token",
}

_HEAD = """# The HTTP contract

Generated from the route declarations (`python -m stampede.api.contract`);
the router enforces each route's auth and path patterns before its handler
runs, and `GET /openapi.json` on each listener serves the same operations with
their request and response schemas. Errors are the JSON shape
`{"error": {"code", "message"}}`; [errors.md](errors.md) lists every code.
Each listener also serves `GET /openapi.json` and `GET /docs`; `GET /metrics`
(Prometheus) is on the admin listener (and on the public one too only with
`STAMPEDE_PUBLIC_METRICS=1`). The admin listener's OpenAPI document also lists
the webhook payloads (`webhooks`) the delivery worker sends.

Mutating routes marked *idempotent* take an `Idempotency-Key` header (1 to 255
visible characters): a retry answers the first answer and changes nothing; the
same key with another request is 422 `idempotency_mismatch`; a retry while the
first is still being served is 409 `conflict` with `Retry-After`.
"""


def _row(op: Operation) -> str:
    success = ", ".join(str(s) for s in (op.status, *op.also))
    errors = ", ".join(str(s) for s in sorted({*op.errors, *enforced_errors(op)}))
    notes = ["idempotent"] if op.idempotent else []
    notes += [f"`{h}`" for h in op.headers]
    return (f"| `{op.method} {op.path}` | {op.summary} | {_AUTH.get(op.auth, op.auth)} "
            f"| {success} | {errors} | {'; '.join(notes)} |")


def markdown() -> str:
    parts = [_HEAD]
    for title, port, tables in LISTENERS:
        parts.append(f"\n## {title} ({port})\n\n"
                     "| route | what it does | who may call it | success | errors | notes |\n"
                     "| --- | --- | --- | --- | --- | --- |")
        parts += [_row(op) for routes in tables for op in routes.operations]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
