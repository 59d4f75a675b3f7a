"""The admin actions that are no campaign's event: a row each in `admin_actions`.

Campaign definitions, patches and restocks are audited by their own events
(durable/queries.py AUDITED). Every other admin route that changes state
(webhook endpoints, merchant and scanner credentials, presale code batches,
segment edits, grants, allocation returns, coupon rule changes, operator
refunds) is written here by the API once it has succeeded
(stampede/api/audit.py): who, which route, which target, before and after.
The audit log (`GET /admin/v1/audit-log`) reads both, in one order.
"""

from typing import Any

import msgspec

from stampede.durable.store import Store
from stampede.durable.store import schema as t

TYPE = "admin_action"
"""The audit log's `type` of these rows."""
MAX_VALUE_BYTES = 8192
"""A before or after larger than this is stored as its size only (a grant to
thousands of users is in the events; the log says that it happened)."""


class AdminAction(msgspec.Struct, kw_only=True):
    at_ms: int
    actor: str
    action: str
    """The route, as declared: "PUT /admin/v1/merchants/{mid}"."""
    target: str
    """The path asked for: "/admin/v1/merchants/m1"."""
    campaign_id: str = ""
    status: int
    before: Any = None
    after: Any = None


def bounded(value: Any) -> Any:
    """`value`, or a note of its size when it is too large to keep whole."""
    size = len(msgspec.json.encode(value))
    return value if size <= MAX_VALUE_BYTES else {"omitted_bytes": size}


async def record(store: Store, action: AdminAction) -> None:
    data = {"actor": action.actor, "action": action.action, "target": action.target,
            "status": action.status, "before": bounded(action.before),
            "after": bounded(action.after)}
    async with store.engine.begin() as conn:
        await conn.execute(t.admin_actions.insert().values(
            campaign_id=action.campaign_id, type=TYPE, ts=action.at_ms,
            data=msgspec.json.encode(data).decode()))
