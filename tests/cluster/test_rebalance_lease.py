"""Two gateways (two `stampede serve`, as on two hosts) on one Valkey Cluster: one
rebalancer acts for a sharded campaign at a time, under a lease in shard 0's slot;
when the gateway holding it is killed (SIGKILL, so it cannot hand the lease back),
the other takes the lease over within the lease time and tops up a hot shard."""

import os
import signal
import time
from pathlib import Path

import aiohttp
import msgspec
from redis.cluster import RedisCluster

from stampede.domain import rebalance, shards
from stampede.state import keys
from stampede.state.connection import state_client
from tests.conftest import campaign_spec
from tests.system.service import Service, children, http, wait_for

SWEEP_MS = 100
LEASE_S = max(rebalance.LEASE_MIN_MS, rebalance.LEASE_SWEEPS * SWEEP_MS) / 1000


def _holder_pid(client: RedisCluster) -> int | None:
    token = client.get(keys.rebalance_lease_key("ls"))
    return None if token is None else int(str(token).split(":")[1])


def _owner(pid: int, gateways: list[Service]) -> Service:
    """The gateway whose process (or one of its workers) holds `pid`."""
    return next(g for g in gateways if pid == g.proc.pid or pid in children(g.proc.pid))


async def _buy(url: str, users: list[str]) -> list[int]:
    async with aiohttp.ClientSession() as session:
        async def one(user: str) -> int:
            async with session.post(f"{url}/v1/campaigns/ls/claims",
                                    json={"sku": "tee"}, headers={"X-User-Id": user}) as r:
                return r.status
        return [await one(u) for u in users]


async def test_another_gateway_takes_the_rebalancer_lease_when_its_holder_dies(
        clean_cluster: str, tmp_path: Path) -> None:
    env = {"STAMPEDE_REDIS_URL": clean_cluster, "STAMPEDE_REDIS_CLUSTER": "1",
           "STAMPEDE_HOLD_SWEEP_INTERVAL_MS": str(SWEEP_MS)}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    gateways = [Service(tmp_path / "a", env),  # the second stores nothing: one persister
                Service(tmp_path / "b", {**env, "STAMPEDE_PERSISTER": "0"})]
    client = RedisCluster.from_url(clean_cluster, decode_responses=True)
    try:
        admin = {"Authorization": f"Bearer {gateways[0].admin_token()}",
                 "Content-Type": "application/json"}
        spec = msgspec.json.encode(campaign_spec(stock=300, per_user=None, shards=3))
        assert http(f"{gateways[0].admin_url}/admin/v1/campaigns/ls", admin, spec,
                    "PUT")[0] == 201
        assert wait_for(lambda: _holder_pid(client) is not None)
        first = _holder_pid(client)
        assert first is not None
        holder = _owner(first, gateways)
        # The lease stays with its holder while it lives (it keeps it every sweep).
        for _ in range(10):
            time.sleep(SWEEP_MS / 1000)
            assert _holder_pid(client) == first
        survivor = next(g for g in gateways if g is not holder)

        os.kill(holder.proc.pid, signal.SIGKILL)  # no clean stop: the lease must lapse
        holder.proc.wait(10)
        killed_at = time.monotonic()
        assert wait_for(lambda: _holder_pid(client) not in (None, first), timeout=30)
        taken_after = time.monotonic() - killed_at
        assert _owner(_holder_pid(client) or 0, gateways) is survivor
        # Within the lease time and a sweep or two (generous on a loaded machine).
        assert taken_after < LEASE_S + 5, taken_after

        # The new holder rebalances: shard 0's users buy, and units move to shard 0
        # ahead of its running dry (each move's lend is a stock_adjusted on a donor).
        hot = [u for i in range(2000) if shards.shard_of_user(u := f"h{i}", 3) == 0]
        assert set(await _buy(survivor.url, hot[:60])) == {201}
        ck = keys.campaign_keys("ls")

        def topped_up() -> bool:
            return int(client.hget(ck.stock, "tee.r") or 0) > 100

        assert wait_for(topped_up, timeout=30), client.hgetall(ck.stock)
        redis = state_client(clean_cluster, cluster=True)
        try:
            report = await shards.audit(redis, "ls", 3)
        finally:
            await redis.aclose()
        assert report.problems == [] and report.skus["tee"]["held"] == 60
    finally:
        client.close()
        for g in gateways:
            g.kill()

