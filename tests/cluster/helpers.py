"""Helpers of the cluster tests that run `stampede serve` against a cluster."""

import asyncio
import time
from typing import Any

from stampede.durable.lagcheck import compare
from stampede.durable.store import Store
from stampede.state.connection import state_client


async def settled(url: str, store: Store, timeout_s: float = 30.0) -> bool:
    """Every event persisted, and Redis neither ahead of nor behind the store."""
    redis = state_client(url, cluster=True)
    try:
        deadline = time.monotonic() + timeout_s
        report: dict[str, Any] = {}
        while time.monotonic() < deadline:
            report = await compare(redis, store, max_lag_s=60)
            if report["ok"] and all(c.get("unpersisted") == 0
                                    and c["store_events"] == c["redis_events"]
                                    for c in report["campaigns"].values()):
                return True
            await asyncio.sleep(0.2)
        print("not settled:", report)  # shown with the failure: which campaign, which count
        return False
    finally:
        await redis.aclose()
