"""A primary killed with SIGKILL under load: its replica takes over, nothing answered is
lost, nothing is claimed twice, and the store agrees with Redis afterwards.

`stampede serve` runs as a real process in cluster mode (its persister child, its
healing) against a cluster of this test's own (three primaries, three replicas,
cluster-node-timeout 1 s), with replica acknowledgement on (the default:
STAMPEDE_CLUSTER_WAIT_REPLICAS=1). Buyers claim over HTTP in three campaigns,
one per primary, each request with its own user and Idempotency-Key; a 503 is
retried with the same key until it is answered. Midway the primary of
campaign f0 is killed; once its replica is promoted the killed node is started
again and rejoins as the new primary's replica.

Zero loss: a claim is answered 201 only once a replica has it, and the
persister stores only events a replica has, so every claim answered 201 is in
Redis and in the store after the failover. Claims in flight when the primary
died get 503 `unavailable`, and so do those of f0 while its promoted replica
has no replica of its own to acknowledge them (until the killed node
rejoins); their retries with the same Idempotency-Key give each key exactly
one claim.
"""

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
from redis.cluster import RedisCluster
from sqlalchemy import select

from stampede.durable.audit import audit
from stampede.durable.store import open_store
from stampede.durable.store import schema as t
from stampede.runtime.valkey_cluster import LocalValkeyCluster
from stampede.state import records
from tests.cluster.helpers import settled
from tests.conftest import campaign_spec
from tests.system.service import STAMPEDE, Service, http

CAMPAIGNS = ("f0", "f1", "f2")
BUYERS = 24
RETRY_FOR_S = 30.0


@dataclass
class Answered:
    claim_id: str
    campaign: str
    user: str
    at: float


@dataclass
class Load:
    url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    answered: dict[str, Answered] = field(default_factory=dict)
    """Idempotency-Key -> the claim its (last) 201 named."""
    unavailable: list[dict[str, object]] = field(default_factory=list)
    """Bodies of the 503s seen."""
    retried_keys: set[str] = field(default_factory=set)
    other: list[tuple[int, object]] = field(default_factory=list)

    async def buyer(self, session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            cid = CAMPAIGNS[(n + i) % len(CAMPAIGNS)]
            key, user = f"k{n}-{i}", f"b{n}-{i}"
            i += 1
            await self.claim(session, cid, user, key)

    async def claim(self, session: aiohttp.ClientSession, cid: str, user: str,
                    key: str) -> None:
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            async with session.post(f"{self.url}/v1/campaigns/{cid}/claims",
                                    json={"sku": "tee"},
                                    headers={"X-User-Id": user, "Idempotency-Key": key}) as r:
                body = await r.json()
                if r.status == 201:
                    earlier = self.answered.get(key)
                    assert earlier is None or earlier.claim_id == body["claim_id"], \
                        f"{key}: answered {earlier} then {body}"
                    self.answered[key] = Answered(body["claim_id"], cid, user, time.monotonic())
                    return
                if r.status != 503:
                    self.other.append((r.status, body))
                    return
            self.unavailable.append(body)
            self.retried_keys.add(key)
            assert time.monotonic() < deadline, f"{key}: still 503 after {RETRY_FOR_S} s"
            await asyncio.sleep(0.05)


def _env(cluster: LocalValkeyCluster, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env.update(STAMPEDE_REDIS_URL=cluster.url, STAMPEDE_REDIS_CLUSTER="1",
               STAMPEDE_DATA_DIR=str(data_dir), STAMPEDE_DEV_AUTH="1",
               STAMPEDE_PERSIST_CLAIM_IDLE_MS="500")
    return env


async def test_a_primary_killed_under_load_loses_no_answered_claim(
        own_cluster: LocalValkeyCluster, tmp_path: Path) -> None:
    data = tmp_path / "svc"
    data.mkdir()
    env = _env(own_cluster, data)
    svc = Service(data, {k: v for k, v in env.items() if k.startswith("STAMPEDE_")})
    client = RedisCluster.from_url(own_cluster.url, decode_responses=True)
    try:
        admin = {"Authorization": f"Bearer {svc.admin_token()}",
                 "Content-Type": "application/json"}
        spec = msgspec.json.encode(campaign_spec(stock=100_000, per_user=None))
        for cid in CAMPAIGNS:
            assert http(f"{svc.admin_url}/admin/v1/campaigns/{cid}", admin, spec, "PUT")[0] == 201
        homes = {cid: int(client.get_node_from_key(f"{{c:{cid}}}:meta").port)
                 for cid in CAMPAIGNS}
        victim = own_cluster.node_for_port(homes["f0"])

        load = Load(svc.url)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            buyers = asyncio.gather(*(load.buyer(session, n) for n in range(BUYERS)))
            await asyncio.sleep(1.5)
            before_kill = len(load.answered)
            killed_at = time.monotonic()
            own_cluster.kill(victim)
            await asyncio.to_thread(own_cluster.wait_healthy, 30)
            failed_over_s = time.monotonic() - killed_at
            # f0's new primary has no replica: its claims wait (503) until one rejoins
            await asyncio.to_thread(own_cluster.restart, victim)
            await asyncio.to_thread(own_cluster.wait_healthy, 30)
            rejoined_s = time.monotonic() - killed_at
            await asyncio.sleep(1.5)  # claims go on against the promoted replica
            load.stop.set()
            await buyers

        assert before_kill > 50, "the load never got going"
        assert not load.other, load.other[:5]
        # In-flight claims of the dead primary were told to retry, with the stable code.
        assert load.unavailable, "no claim was in flight when the primary died"
        assert {b["error"]["code"] for b in load.unavailable} == {"unavailable"}  # type: ignore[index]
        promoted = {n.port for n in own_cluster.primary_nodes()}
        assert victim.port not in promoted and len(promoted) == 3
        after_rejoin = [a for a in load.answered.values()
                        if a.campaign == "f0" and a.at > killed_at + rejoined_s]
        assert after_rejoin, "f0 never sold again on its promoted replica"

        # Healing (every second in `serve`) has rebuilt a campaign that lost events the
        # store holds; the persister has caught up. Then compare claim by claim.
        store = await open_store(f"sqlite:///{data / 'stampede.db'}")
        try:
            assert await settled(own_cluster.url, store), "the persister did not catch up"
            report = await audit(store)
            assert report["ok"], report
            async with store.engine.connect() as conn:
                stored = {r[0] for r in await conn.execute(select(t.claims.c.claim_id))}
        finally:
            await store.close()
        in_redis = {cid: client.hgetall(f"{{c:{cid}}}:claims") for cid in CAMPAIGNS}
        owners: dict[str, set[str]] = {}
        for raw in in_redis.values():
            for claim_id, record in raw.items():
                owners.setdefault(records.CLAIM.decode(record).user, set()).add(claim_id)
        assert all(len(held) == 1 for held in owners.values()), "a user claimed twice"
        answered_ids = {a.claim_id for a in load.answered.values()}
        every_claim = {c for raw in in_redis.values() for c in raw}
        # No double effect: Redis holds no claim nobody was answered, and one per key.
        assert every_claim <= answered_ids, sorted(every_claim - answered_ids)[:5]
        lost = [a for a in load.answered.values() if a.claim_id not in every_claim]
        print(f"failover took {failed_over_s:.1f} s, the killed node rejoined after "
              f"{rejoined_s:.1f} s; {len(load.answered)} claims answered, "
              f"{len(load.retried_keys)} keys retried after 503, {len(lost)} lost")
        assert not lost, f"answered 201, gone after the failover: {lost[:5]}"
        assert stored == every_claim
        # The CLI finds the cluster through the same two variables.
        check = subprocess.run([STAMPEDE, "check"], env=env, capture_output=True, text=True,
                               timeout=120)
        assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    finally:
        client.close()
        svc.kill()
