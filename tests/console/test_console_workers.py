"""Under `serve --workers 2` the console's feed lists every live worker, whichever serves it."""

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.service import Service, children, http, wait_for

OPERATOR = "workers-operator-token"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    served = Service(tmp_path, env={"STAMPEDE_ADMIN_TOKENS": f"operator:{OPERATOR}",
                                    "STAMPEDE_CONSOLE_TICK_MS": "200"},
                     args=("--workers", "2"))
    try:
        yield served
    finally:
        served.kill()


def first_state(service: Service) -> dict[str, Any]:
    status, body = http(f"{service.admin_url}/admin/v1/live/ticket", method="POST",
                        headers={"Authorization": f"Bearer {OPERATOR}"})
    assert status == 200, body
    url = f"{service.admin_url}/admin/v1/live?ticket={body['ticket']}"
    with urllib.request.urlopen(url, timeout=10) as stream:
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                return dict(json.loads(line[len("data: "):]))
    raise AssertionError("no state")


def test_every_worker_shows_with_its_pid(service: Service) -> None:
    workers = {pid for pid, cmd in children(service.proc.pid).items() if " worker " in cmd}
    assert len(workers) == 2
    # Each worker registers when its apps are built: both are up once both are listed.
    assert wait_for(lambda: {w["pid"] for w in first_state(service)["system"]["workers"]}
                    == workers, 20)
    state = first_state(service)
    assert state["system"]["worker_pid"] in workers


def test_a_dead_worker_leaves_the_list_and_its_replacement_joins(service: Service) -> None:
    workers = {pid for pid, cmd in children(service.proc.pid).items() if " worker " in cmd}
    assert wait_for(lambda: {w["pid"] for w in first_state(service)["system"]["workers"]}
                    == workers, 20)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: len({p for p, c in children(service.proc.pid).items()
                                 if " worker " in c} - workers) == 1, 20)
    now = {pid for pid, cmd in children(service.proc.pid).items() if " worker " in cmd}
    assert wait_for(lambda: {w["pid"] for w in first_state(service)["system"]["workers"]}
                    == now, 20)
    assert victim not in now
