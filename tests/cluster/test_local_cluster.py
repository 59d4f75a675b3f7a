"""The local Valkey Cluster the cluster tests run on is a real, whole cluster."""

import os
import signal
import subprocess
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from stampede.runtime.valkey_cluster import SLOTS, LocalValkeyCluster
from tests.system.service import STAMPEDE, alive


def test_three_primaries_three_replicas_every_slot_served(
        valkey_cluster: LocalValkeyCluster | None, clean_cluster: str) -> None:
    client = RedisCluster.from_url(clean_cluster, decode_responses=True)
    try:
        info = client.cluster_info(target_nodes=RedisCluster.RANDOM)
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == SLOTS
        assert len(client.get_primaries()) == 3
        assert len(client.get_replicas()) == 3
        # keys land on different primaries; one hash tag keeps keys together
        homes = {client.get_node_from_key(f"{{c:{n}}}:state").name for n in range(30)}
        assert len(homes) == 3
        assert client.keyslot("{c:7}:state") == client.keyslot("{c:7}:stock:tee")
        client.set("{c:7}:state", "open")
        assert client.get("{c:7}:state") == "open"
    finally:
        client.close()
    if valkey_cluster is not None:
        assert {n.port for n in valkey_cluster.primary_nodes()} == {
            n.port for n in valkey_cluster.nodes[:3]}


def test_a_killed_primary_is_replaced_by_its_replica(own_cluster: LocalValkeyCluster) -> None:
    client = RedisCluster.from_url(own_cluster.url, decode_responses=True)
    try:
        home = client.get_node_from_key("{c:k}:x")
        client.set("{c:k}:x", "1")
        client.wait(1, 2000, target_nodes=home)  # the replica has it before the kill
        dead = own_cluster.node_for_port(int(home.port))
    finally:
        client.close()
    replica_ports = {n.port for n in own_cluster.nodes if n.port != dead.port}
    own_cluster.kill(dead)
    own_cluster.wait_healthy(timeout=30)
    promoted = {n.port for n in own_cluster.primary_nodes()}
    assert dead.port not in promoted and len(promoted) == 3 and promoted <= replica_ports
    survivor = RedisCluster.from_url(own_cluster.nodes[(dead.index + 1) % 6].url,
                                     decode_responses=True)
    try:
        assert survivor.get("{c:k}:x") == "1"
    finally:
        survivor.close()


def test_the_cli_runs_a_local_cluster_until_stopped(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env["STAMPEDE_DATA_DIR"] = str(tmp_path)
    proc = subprocess.Popen([STAMPEDE, "valkey-cluster", "--primaries", "2", "--replicas", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[1] == "STAMPEDE_REDIS_CLUSTER=1", line
        assert line[2] == "STAMPEDE_CLUSTER_WAIT_REPLICAS=0", line  # no replica to wait for
        url = line[0].removeprefix("STAMPEDE_REDIS_URL=")
        # (a plain client of that node: redis-py's sync cluster client leaves its
        # startup connection open)
        with redis.Redis.from_url(url, decode_responses=True) as node:
            info = str(node.execute_command("CLUSTER", "INFO"))  # type: ignore[no-untyped-call]
            assert "cluster_state:ok" in info and "cluster_size:2" in info
        pids = [int(p.read_text()) for p in (tmp_path / "cluster").glob("node*/valkey.pid")]
        assert len(pids) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        if proc.stdout is not None:
            proc.stdout.close()
    assert not any(alive(pid) for pid in pids)  # every node stopped with it
