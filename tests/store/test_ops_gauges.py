"""The gauges the shipped alerts watch: Redis memory, and expired holds from the store."""

from prometheus_client import REGISTRY

from stampede import Engine
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.runtime.gauges import refresh_redis_memory, refresh_store_gauges


async def test_expired_hold_units_per_campaign_come_from_the_store(store: Store) -> None:
    row = {"price": 100, "per_user": 2, "released": 10, "available": 0, "held": 0,
           "sold": 0, "cancelled": 0}
    async with store.begin() as conn:
        await conn.execute(t.skus.insert(), [
            {**row, "campaign_id": "gauge-a", "sku": "tee", "expired": 3},
            {**row, "campaign_id": "gauge-a", "sku": "cap", "expired": 4},
            {**row, "campaign_id": "gauge-b", "sku": "tee", "expired": 0}])
    await refresh_store_gauges(store)
    value = REGISTRY.get_sample_value
    assert value("stampede_holds_expired_units", {"campaign": "gauge-a"}) == 7
    assert value("stampede_holds_expired_units", {"campaign": "gauge-b"}) == 0


async def test_redis_memory_is_read_from_info(sale: Engine) -> None:
    await sale.redis.config_set("maxmemory", "512mb")
    try:
        await refresh_redis_memory(sale)
        assert REGISTRY.get_sample_value("stampede_redis_memory_max_bytes") == 512 * 2**20
        used = REGISTRY.get_sample_value("stampede_redis_memory_used_bytes")
        assert used is not None and 0 < used < 512 * 2**20
    finally:
        await sale.redis.config_set("maxmemory", "0")
