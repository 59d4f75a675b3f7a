"""`stampede serve --workers 2` against a Valkey Cluster: both gateway processes sell the
same campaign, nothing is oversold, and the store ends equal to Redis.

Buyers (more than the stock) each open a connection of their own, so the
kernel spreads them over the two workers' SO_REUSEPORT sockets; each worker's
CPU over the rush shows it served its share.
"""

import asyncio
from pathlib import Path

import aiohttp
import msgspec
from redis.cluster import RedisCluster
from sqlalchemy import select

from stampede.durable.audit import audit
from stampede.durable.store import open_store
from stampede.durable.store import schema as t
from tests.cluster.helpers import settled
from tests.conftest import campaign_spec
from tests.system.service import Service, children, http, wait_for

STOCK = 300
BUYERS = 600


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks


async def _rush(url: str, cid: str) -> list[int]:
    # one connection per request: each is a new flow for SO_REUSEPORT to place
    connector = aiohttp.TCPConnector(force_close=True, limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def buy(n: int) -> int:
            async with session.post(f"{url}/v1/campaigns/{cid}/claims", json={"sku": "tee"},
                                    headers={"X-User-Id": f"b{n}",
                                             "Idempotency-Key": f"k{n}"}) as r:
                return r.status
        return await asyncio.gather(*(buy(n) for n in range(BUYERS)))


async def test_two_workers_sell_one_campaign_on_the_cluster(clean_cluster: str,
                                                           tmp_path: Path) -> None:
    svc = Service(tmp_path, {"STAMPEDE_REDIS_URL": clean_cluster,
                             "STAMPEDE_REDIS_CLUSTER": "1"}, args=("--workers", "2"))
    client = RedisCluster.from_url(clean_cluster, decode_responses=True)
    try:
        def workers() -> list[int]:
            return sorted(p for p, cmd in children(svc.proc.pid).items()
                          if "stampede.runtime.cli worker" in cmd)

        assert wait_for(lambda: len(workers()) == 2), svc.output()[-2000:]
        assert wait_for(svc.ready)
        admin = {"Authorization": f"Bearer {svc.admin_token()}",
                 "Content-Type": "application/json"}
        spec = msgspec.json.encode(campaign_spec(stock=STOCK, per_user=1))
        assert http(f"{svc.admin_url}/admin/v1/campaigns/wk", admin, spec, "PUT")[0] == 201

        pids = workers()
        before = {pid: _cpu_s(pid) for pid in pids}
        statuses = await _rush(svc.url, "wk")
        spent = {pid: _cpu_s(pid) - before[pid] for pid in pids}
        assert statuses.count(201) == STOCK, sorted(set(statuses))
        assert statuses.count(409) == BUYERS - STOCK
        assert min(spent.values()) >= 0.2 * max(spent.values()), f"one worker idle: {spent}"

        claims = client.hgetall("{c:wk}:claims")
        assert len(claims) == STOCK
        store = await open_store(f"sqlite:///{tmp_path / 'stampede.db'}")
        try:
            assert await settled(clean_cluster, store), "the persister did not catch up"
            assert (await audit(store))["ok"]
            async with store.engine.connect() as conn:
                stored = {r[0] for r in await conn.execute(
                    select(t.claims.c.claim_id).where(t.claims.c.campaign_id == "wk"))}
        finally:
            await store.close()
        assert stored == set(claims)
    finally:
        client.close()
        svc.kill()
