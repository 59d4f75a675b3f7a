"""The local Valkey Cluster the cluster tests run on is a real, whole cluster."""

from redis.cluster import RedisCluster

from stampede.runtime.valkey_cluster import SLOTS, LocalValkeyCluster


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
