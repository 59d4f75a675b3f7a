"""SIGTERM under load: readiness fails first, accepted requests all finish.

"Lost" would mean the engine placed a hold whose answer never reached the
client: so after the drain, the holds in Redis must equal the 201s the
clients received, and no client may have seen a 5xx.
"""

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from stampede import Engine, Settings
from tests.system.service import Service, http

SPEC = {"name": "drain", "opens_at": "2026-01-01T00:00:00Z",
        "closes_at": "2099-01-01T00:00:00Z", "limits": {"per_user": 1000},
        "skus": [{"sku": "tee", "price": 1,
                  "waves": [{"at": "2026-01-01T00:00:00Z", "qty": 1_000_000}]}]}


async def _load(url: str, stop_after: int) -> tuple[int, int, list[int]]:
    """Clients claim in a loop until the server goes away; (201s, errors, 5xx statuses)."""
    created = errors = 0
    bad: list[int] = []
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def client(c: int) -> None:
            nonlocal created, errors
            for _ in range(stop_after):
                try:
                    async with session.post(f"{url}/v1/campaigns/drain/claims",
                                            json={"sku": "tee"},
                                            headers={"X-User-Id": f"u{c}"}) as resp:
                        await resp.read()
                        if resp.status == 201:
                            created += 1
                        elif resp.status >= 500:
                            bad.append(resp.status)
                except (TimeoutError, aiohttp.ClientError):
                    errors += 1
                    return
        await asyncio.gather(*(client(c) for c in range(32)))
    return created, errors, bad


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_during_load_loses_no_accepted_request(
        tmp_path: Path, clean_redis: str, workers: int) -> None:
    svc = Service(tmp_path, env={"STAMPEDE_REDIS_URL": clean_redis,
                                 "STAMPEDE_DRAIN_DELAY_MS": "200"},
                  args=("--workers", str(workers)))
    try:
        token = svc.admin_token()
        status, _ = http(f"{svc.admin_url}/admin/v1/campaigns/drain",
                         {"Authorization": f"Bearer {token}"}, json.dumps(SPEC).encode(), "PUT")
        assert status == 201
        load = asyncio.create_task(_load(svc.url, stop_after=10_000))
        await asyncio.sleep(1.0)
        svc.proc.send_signal(15)
        created, errors, bad = await load
        assert await asyncio.to_thread(svc.proc.wait, 30) == 0
    finally:
        svc.kill()
    assert bad == [], f"5xx during drain: {bad[:5]}"
    assert created > 100 and errors <= 32
    engine = Engine.from_url(clean_redis, Settings())
    try:
        stats = await engine.stats("drain")
    finally:
        await engine.close()
    assert stats is not None
    assert stats.skus[0].held == created, "a hold was placed whose answer was lost"
