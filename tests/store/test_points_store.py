"""Points exchanges reach the store, pass the audit, and are answered again after recovery."""

from typing import Any

import msgspec

from stampede import Engine, Outcome
from stampede.durable.audit import audit
from stampede.durable.persister import Persister
from stampede.durable.points_client import HttpPoints
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from tests.coupons.helpers import drop_spec
from tests.coupons.points_service import points_service
from tests.coupons.test_points import TEMPLATES
from tests.store.test_coupons_store import _coupon_state, _events

SPEC = drop_spec(templates=TEMPLATES, points={"mug": 300})


async def test_exchanges_persist_audit_clean_and_recover(sale: Engine, store: Store,
                                                         persister: Persister,
                                                         raw_redis: Any) -> None:
    from stampede.durable.recovery import recover_campaign
    async with points_service() as service:
        sale.coupons.points = HttpPoints(service.url, timeout_s=2)
        service.balances.update(ann=1000, bob=100)
        await sale.define_campaign("d1", SPEC)
        first = await sale.coupons.claim("d1", "ann", "mug", 2, idempotency_key="a")
        assert first.outcome is Outcome.OK
        assert (await sale.coupons.claim("d1", "bob", "mug", idempotency_key="b")).reason \
            == "points_refused"
        before = await _coupon_state(raw_redis)
        await persister.drain()
        summary = await audit(store)
        assert summary["ok"], summary
        assert summary["campaigns"]["d1"]["coupons"]["points_exchanged"] == 1
        assert summary["campaigns"]["d1"]["coupons"]["points"] == 600
        await raw_redis.flushall()
        await recover_campaign(raw_redis, store, "d1", 86_400_000)
        assert await _coupon_state(raw_redis) == before
        requests = service.requests
        again = await sale.coupons.claim("d1", "ann", "mug", 2, idempotency_key="a")
        assert again.view == first.view and service.requests == requests
        assert service.balances["ann"] == 400
        await sale.coupons.points.close()


async def test_audit_finds_one_debit_paying_twice(store: Store) -> None:
    spec = msgspec.json.encode(SPEC).decode()
    paid = {"user": "ann", "sku": "mug", "qty": 1, "debit": "d" * 32, "points": 300}
    async with store.begin() as conn:
        await store_events(conn, store, _events(
            ("campaign_defined", {"spec": spec}),
            ("points_exchanged", {"claim": "d1.1", **paid}),
            ("points_exchanged", {"claim": "d1.2", **paid})))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["d1"]["violation_samples"]}
    assert "points_debit_twice" in kinds
