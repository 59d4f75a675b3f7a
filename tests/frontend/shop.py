"""Setting up campaigns on the real service the page tests drive (admin API, dev auth)."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.system.service import Service, http


def at(delta_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


def admin(service: Service, method: str, path: str, body: object | None = None
          ) -> tuple[int, Any]:
    return http(f"{service.admin_url}{path}",
                {"Authorization": f"Bearer {service.admin_token()}",
                 "Content-Type": "application/json"},
                None if body is None else json.dumps(body).encode(), method)


def as_user(service: Service, user: str, method: str, path: str, body: object | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return http(f"{service.url}{path}", {"X-User-Id": user, "Content-Type": "application/json",
                                         **(headers or {})},
                None if body is None else json.dumps(body).encode(), method)


def put_campaign(service: Service, cid: str, qty: int, opens_in_s: float = -60,
                 **extra: Any) -> None:
    opens = at(opens_in_s)
    spec = {"name": f"Demo {cid}", "opens_at": opens, "closes_at": at(3600),
            "limits": {"per_user": 2},
            "skus": [{"sku": "tee", "price": 2500, "waves": [{"at": opens, "qty": qty}]}],
            **extra}
    status, body = admin(service, "PUT", f"/admin/v1/campaigns/{cid}", spec)
    assert status == 201, body


def sku_stats(service: Service, cid: str) -> dict[str, Any]:
    status, body = admin(service, "GET", f"/admin/v1/campaigns/{cid}/stats")
    assert status == 200, body
    return dict(body["skus"][0])
