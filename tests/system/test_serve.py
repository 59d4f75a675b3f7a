"""`stampede serve` as a user runs it: starts, answers, stops its Valkey on every exit path."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.valkey import server_binary

STAMPEDE = str(Path(sys.executable).parent / "stampede")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _wait(predicate: "object", timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _get(url: str, headers: dict[str, str] | None = None,
         data: bytes | None = None, method: str | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Service:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port, self.admin_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
        env.update(STAMPEDE_DATA_DIR=str(data_dir), STAMPEDE_DEV_AUTH="1")
        self.log = data_dir / "serve.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [STAMPEDE, "serve", "--port", str(self.port),
                 "--admin-port", str(self.admin_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        assert _wait(self.ready), self.output()

    def ready(self) -> bool:
        try:
            return _get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text()

    @property
    def valkey_pid(self) -> int:
        return int((self.data_dir / "valkey" / "valkey.pid").read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        svc.kill()


def test_serve_runs_a_sale_and_stops_its_valkey_on_sigterm(service: Service) -> None:
    token = (service.data_dir / "admin.token").read_text().strip()
    spec = {"name": "s", "opens_at": "2026-01-01T00:00:00Z", "closes_at": "2099-01-01T00:00:00Z",
            "skus": [{"sku": "tee", "price": 100,
                      "waves": [{"at": "2026-01-01T00:00:00Z", "qty": 1}]}]}
    status, _ = _get(f"http://127.0.0.1:{service.admin_port}/admin/v1/campaigns/s",
                     {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                     json.dumps(spec).encode(), "PUT")
    assert status == 201
    claim = json.dumps({"sku": "tee"}).encode()
    url = f"http://127.0.0.1:{service.port}/v1/campaigns/s/claims"
    assert _get(url, {"X-User-Id": "a"}, claim, "POST")[0] == 201
    assert _get(url, {"X-User-Id": "b"}, claim, "POST")[1]["error"] == {  # type: ignore[index]
        "code": "sold_out", "message": "no units left for this SKU"}
    valkey = service.valkey_pid
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(20) == 0
    assert _wait(lambda: not _alive(valkey), 10)
    assert (service.data_dir / "valkey" / "appendonlydir").is_dir()  # AOF on


def test_sigkill_of_serve_leaves_no_valkey(service: Service) -> None:
    valkey = service.valkey_pid
    service.kill()
    assert _wait(lambda: not _alive(valkey), 10)


def test_leftover_valkey_is_stopped_at_next_start(tmp_path: Path) -> None:
    # A server left behind (started without our parent-death guard) and its pid file.
    vdir = tmp_path / "valkey"
    vdir.mkdir()
    stray = subprocess.Popen([server_binary(), "--port", str(_free_port()), "--save", "",
                              "--dir", str(vdir)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (vdir / "valkey.pid").write_text(str(stray.pid))
    svc = Service(tmp_path)
    try:
        assert stray.wait(10) is not None
        assert svc.valkey_pid != stray.pid and _alive(svc.valkey_pid)
    finally:
        svc.kill()
        stray.kill() if stray.poll() is None else None
