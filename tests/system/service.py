"""`stampede serve` run as a real process for system tests."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from stampede.runtime.ports import free_port

STAMPEDE = str(Path(sys.executable).parent / "stampede")


def free_port_pair() -> int:
    """A free port whose next port is free too (public API and, +1, admin API)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def http(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
         method: str | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Service:
    """One `stampede serve` with its own data dir and ports; stopped by `kill()`."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), adjacent_ports: bool = False) -> None:
        self.data_dir = data_dir
        if adjacent_ports:  # the admin port next to the public one, as by default
            self.port = free_port_pair()
            self.admin_port = self.port + 1
        else:
            self.port, self.admin_port = free_port(), free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
        full_env.update(STAMPEDE_DATA_DIR=str(data_dir), STAMPEDE_DEV_AUTH="1",
                        STAMPEDE_DRAIN_DELAY_MS="0")
        full_env.update(env or {})
        self.log = data_dir / "serve.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [STAMPEDE, "serve", "--port", str(self.port),
                 "--admin-port", str(self.admin_port), *args],
                env=full_env, stdout=log, stderr=subprocess.STDOUT)
        if not wait_for(self.ready, 60):  # generous: a loaded 2-core machine starts slowly
            self.kill()  # never leave a serve running behind a failed start
            raise AssertionError(f"not ready in 60 s:\n{self.output()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def ready(self) -> bool:
        try:
            return http(f"{self.url}/readyz")[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text()

    @property
    def valkey_pid(self) -> int:
        """The embedded Valkey's pid (0 while a restart has removed its pid file)."""
        try:
            return int((self.data_dir / "valkey" / "valkey.pid").read_text())
        except (OSError, ValueError):
            return 0

    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def children(pid: int) -> dict[int, str]:
    """The live child processes of `pid`: pid -> command line."""
    found = {}
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if alive(int(child)):
                found[int(child)] = cmd.decode(errors="replace")
    return found


def persister_pid(service: "Service") -> int | None:
    return next((p for p, cmd in children(service.proc.pid).items() if " persist" in cmd), None)


def metric(service: "Service", name: str) -> float:
    """The sum of a metric's samples whose line starts with `name` (labels included)."""
    with urllib.request.urlopen(f"{service.admin_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))
