"""Points exchange over HTTP: contract, error shapes, whose points are debited."""

from collections.abc import AsyncIterator

import msgspec
import pytest

from stampede.durable.points_client import HttpPoints
from tests.api.conftest import Api
from tests.coupons.helpers import drop_spec
from tests.coupons.points_service import PointsService, points_service
from tests.coupons.test_points import TEMPLATES

SPEC = msgspec.json.encode(drop_spec(templates=TEMPLATES, points={"mug": 300}))
CLAIM = "/v1/campaigns/d1/coupons"


@pytest.fixture
async def points(api: Api) -> AsyncIterator[PointsService]:
    async with points_service() as service:
        api.engine.coupons.points = HttpPoints(service.url, timeout_s=2)
        yield service
        await api.engine.coupons.points.close()


def user(name: str, key: str | None = None) -> dict[str, str]:
    return {"X-User-Id": name, **({"Idempotency-Key": key} if key else {})}


async def test_exchange_over_http(api: Api, points: PointsService) -> None:
    assert (await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())).status \
        == 201
    points.balances.update(ann=300, bob=0)
    r = await api.public.post(CLAIM, json={"sku": "mug"}, headers=user("ann"))
    body = await r.json()
    assert r.status == 400 and body["error"]["code"] == "invalid_request"
    assert "Idempotency-Key" in body["error"]["message"]
    r = await api.public.post(CLAIM, json={"sku": "mug"}, headers=user("ann", "k1"))
    assert r.status == 201, await r.text()
    first = await r.json()
    r = await api.public.post(CLAIM, json={"sku": "mug"}, headers=user("ann", "k1"))
    assert r.status == 201 and await r.json() == first
    # Bob's claim debits Bob (the token's user), whatever key he sends.
    r = await api.public.post(CLAIM, json={"sku": "mug"}, headers=user("bob", "k1"))
    body = await r.json()
    assert (r.status, body["error"]["code"]) == (409, "points_refused")
    assert "bob" in body["error"]["message"]
    assert points.balances == {"ann": 0, "bob": 0}
    assert {d[2] for d in points.debits.values()} == {"ann", "bob"}


async def test_exchange_without_a_points_service_is_503(api: Api) -> None:
    await api.admin.put("/admin/v1/campaigns/d1", data=SPEC, headers=api.op())
    r = await api.public.post(CLAIM, json={"sku": "mug"}, headers=user("ann", "k1"))
    body = await r.json()
    assert (r.status, body["error"]["code"]) == (503, "unavailable")
    assert r.headers.get("Retry-After") == "1"
