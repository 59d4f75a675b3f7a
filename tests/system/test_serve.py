"""`stampede serve` as a user runs it: starts, answers, stops its Valkey on every exit path."""

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stampede.runtime.valkey import server_binary
from tests.system.service import Service
from tests.system.service import alive as _alive
from tests.system.service import free_port as _free_port
from tests.system.service import http as _get
from tests.system.service import wait_for as _wait


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
        "code": "sold_out", "message": "no units of SKU 'tee' are left in campaign 's'"}
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


def test_workers_share_the_port_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    svc = Service(tmp_path, args=("--workers", "2"))
    try:
        def workers() -> set[int]:
            pattern = f"stampede.runtime.cli worker .*--port {svc.port}"
            out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
            return {int(p) for p in out.split()}

        assert _wait(lambda: len(workers()) == 2)
        first = workers()
        victim = min(first)
        subprocess.run(["kill", "-9", str(victim)], check=True)
        assert _wait(lambda: len(workers()) == 2 and victim not in workers(), 15)
        assert _wait(svc.ready)
        with urllib.request.urlopen(f"{svc.admin_url}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert "stampede_http_requests_total" in metrics
        # Aggregated from every worker's files (multiprocess mode has no _created series):
        assert "stampede_http_requests_created" not in metrics
        # The replacement counts the restart once it is up (the master exposes nothing):
        assert _wait(lambda: 'stampede_restarts_total{component="worker"} 1.0'
                     in _scrape(svc.admin_url), 15)
        valkey = svc.valkey_pid
        assert svc.terminate() == 0
        assert _wait(lambda: not workers() and not _alive(valkey), 15)
    finally:
        svc.kill()


def _scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        return str(resp.read().decode())
