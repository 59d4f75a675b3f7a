"""`serve` keeps its children alive: a killed persister or embedded Valkey comes back."""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.service import Service, alive, http, metric, persister_pid, wait_for


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, env={"STAMPEDE_RESTART_BACKOFF_MS": "100",
                                 "STAMPEDE_PERSIST_STALL_S": "2"})
    try:
        yield svc
    finally:
        svc.kill()


def _define(service: Service, cid: str = "s") -> None:
    spec = {"name": cid, "opens_at": "2026-01-01T00:00:00Z",
            "closes_at": "2099-01-01T00:00:00Z",
            "skus": [{"sku": "tee", "price": 100,
                      "waves": [{"at": "2026-01-01T00:00:00Z", "qty": 50}]}]}
    import json
    status, _ = http(f"{service.admin_url}/admin/v1/campaigns/{cid}",
                     {"Authorization": f"Bearer {service.admin_token()}",
                      "Content-Type": "application/json"}, json.dumps(spec).encode(), "PUT")
    assert status == 201


def test_a_killed_persister_is_reaped_and_restarted(service: Service) -> None:
    first = persister_pid(service)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: persister_pid(service) not in (None, first), 10), service.output()
    assert not alive(first)  # reaped: no zombie left
    assert metric(service, 'stampede_restarts_total{component="persister"}') == 1
    assert "child died; restarting" in service.output()


def test_a_killed_valkey_comes_back_healed_and_ready(service: Service) -> None:
    _define(service)
    claim = b'{"sku": "tee"}'
    url = f"{service.url}/v1/campaigns/s/claims"
    assert http(url, {"X-User-Id": "a"}, claim, "POST")[0] == 201
    old = service.valkey_pid
    os.kill(old, signal.SIGKILL)
    assert wait_for(lambda: service.valkey_pid not in (0, old) and service.ready(), 20), \
        service.output()
    assert not alive(old)
    status, body = http(f"{service.url}/readyz")
    assert status == 200 and body["checks"]["state_healed"] is True  # type: ignore[index]
    assert http(url, {"X-User-Id": "b"}, claim, "POST")[0] == 201
    assert metric(service, 'stampede_restarts_total{component="valkey"}') == 1


def test_a_stalled_persister_shows_in_readyz_but_keeps_it_ready(tmp_path: Path) -> None:
    svc = Service(tmp_path, env={"STAMPEDE_PERSISTER": "0", "STAMPEDE_PERSIST_STALL_S": "1"})
    try:
        _define(svc)
        assert http(f"{svc.url}/v1/campaigns/s/claims", {"X-User-Id": "a"},
                    b'{"sku": "tee"}', "POST")[0] == 201

        def stalled() -> bool:
            status, body = http(f"{svc.url}/readyz")
            return status == 200 and \
                body["details"]["persister"]["state"] == "stalled"  # type: ignore[index]

        assert wait_for(stalled, 15), http(f"{svc.url}/readyz")
        assert metric(svc, "stampede_persister_stalled") == 1
    finally:
        svc.kill()
