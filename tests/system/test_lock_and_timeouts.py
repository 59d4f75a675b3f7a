"""One serve per data directory; slow clients cannot hold connections."""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from tests.system.service import STAMPEDE, Service, alive, free_port, http


def test_a_second_serve_on_the_same_data_dir_exits_and_leaves_the_first_alone(
        tmp_path: Path) -> None:
    first = Service(tmp_path)
    try:
        valkey = first.valkey_pid
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
        env.update(STAMPEDE_DATA_DIR=str(tmp_path), STAMPEDE_DEV_AUTH="1")
        started = time.monotonic()
        second = subprocess.run([STAMPEDE, "serve", "--port", str(free_port()),
                                 "--admin-port", str(free_port())], env=env,
                                capture_output=True, text=True, timeout=30, check=False)
        assert second.returncode == 1
        assert f"already running (pid {first.proc.pid})" in second.stderr.replace("\n", " ")
        assert time.monotonic() - started < 20  # at once, not after a wait (slow when loaded)
        assert alive(valkey) and first.valkey_pid == valkey
        assert first.ready()
    finally:
        first.kill()


def _open(port: int, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(payload)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes the connection; (closed in time, what it sent)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
        return True, got
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        return True, got
    finally:
        sock.close()


def test_half_sent_headers_and_bodies_are_timed_out(tmp_path: Path) -> None:
    svc = Service(tmp_path, env={"STAMPEDE_HEADER_TIMEOUT_S": "2",
                                 "STAMPEDE_BODY_TIMEOUT_S": "1"})
    try:
        spec = {"name": "s", "opens_at": "2026-01-01T00:00:00Z",
                "closes_at": "2099-01-01T00:00:00Z",
                "skus": [{"sku": "tee", "price": 1,
                          "waves": [{"at": "2026-01-01T00:00:00Z", "qty": 5}]}]}
        assert http(f"{svc.admin_url}/admin/v1/campaigns/s",
                    {"Authorization": f"Bearer {svc.admin_token()}",
                     "Content-Type": "application/json"},
                    json.dumps(spec).encode(), "PUT")[0] == 201
        headers = [_open(svc.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n") for _ in range(20)]
        body = _open(svc.port, b"POST /v1/campaigns/s/claims HTTP/1.1\r\nHost: x\r\n"
                               b"X-User-Id: slow\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 40\r\n\r\n{\"sku\":")
        closed, answer = _closed_within(body, 6)
        assert closed and answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request_timeout" in answer
        for sock in headers:
            assert _closed_within(sock, 6)[0]
        assert svc.ready()  # the service itself is untouched
    finally:
        svc.kill()
