"""The locust scenarios, run headless for seconds against a real service, so they never rot."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.service import Service, http

LOCUST = str(Path(sys.executable).parent / "locust")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # Trusting the loopback proxy lets humans_vs_bots.py spread its crowd over networks.
    svc = Service(tmp_path_factory.mktemp("locust"),
                  env={"STAMPEDE_TRUSTED_PROXIES": "127.0.0.1/32,::1/128"})
    try:
        yield svc
    finally:
        svc.kill()


def _locust(service: Service, scenario: str, *args: str,
            admin: tuple[str, ...] | None = None) -> subprocess.CompletedProcess[str]:
    if admin is None:
        admin = ("--admin-url", service.admin_url, "--admin-token", service.admin_token())
    return subprocess.run(
        [LOCUST, "-f", str(ROOT / "loadtest" / scenario), "--headless", "--only-summary",
         "--host", service.url, *admin, "--create-campaign", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_a_failed_setup_stops_the_run_at_once(service: Service) -> None:
    started = time.monotonic()
    run = _locust(service, "steady_shopping.py", "--campaign", "nope", "-u", "5", "-t", "30s",
                  admin=("--admin-url", service.admin_url, "--admin-token", "stpa_wrong"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "setup failed, not starting" in run.stderr and "401" in run.stderr
    assert time.monotonic() - started < 20  # not the 30 s of load


def test_admin_url_and_token_follow_host_and_data_dir(tmp_path: Path) -> None:
    # No --admin-url, no --admin-token: the admin API is --host's port + 1, and the
    # token the one the service keeps in STAMPEDE_DATA_DIR (as bin/serve's var/).
    svc = Service(tmp_path, adjacent_ports=True)
    try:
        run = subprocess.run(
            [LOCUST, "-f", str(ROOT / "loadtest" / "steady_shopping.py"), "--headless",
             "--only-summary", "--host", svc.url, "--create-campaign", "--campaign", "derived",
             "-u", "3", "-r", "3", "-t", "1s"],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, "STAMPEDE_DATA_DIR": str(svc.data_dir)})
        assert run.returncode == 0, run.stdout + run.stderr
        status, _ = http(f"{svc.url}/v1/campaigns/derived")
        assert status == 200
    finally:
        svc.kill()


def test_shape_scenarios_honour_run_time(service: Service) -> None:
    started = time.monotonic()
    run = _locust(service, "opening_spike.py", "--campaign", "short", "--stock", "5",
                  "--spike-users", "5", "--spike-seconds", "1", "--hold-seconds", "60",
                  "-t", "3s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - started < 30  # the shape alone would run 61 s


def test_opening_spike_smoke(service: Service) -> None:
    run = _locust(service, "opening_spike.py", "--campaign", "spike", "--stock", "30",
                  "--spike-users", "60", "--spike-seconds", "1", "--hold-seconds", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sold_out" in run.stdout and "ok" in run.stdout


def test_steady_shopping_smoke(service: Service) -> None:
    run = _locust(service, "steady_shopping.py", "--campaign", "steady", "-u", "20", "-r", "20",
                  "-t", "3s")
    assert run.returncode == 0, run.stdout + run.stderr


def test_steady_shopping_with_waitlist_smoke(service: Service) -> None:
    # Five units for thirty people who cancel 40% of holds: the rest queue,
    # and cancelled units reach them as offers, which they confirm.
    run = _locust(service, "steady_shopping.py", "--campaign", "steadywl", "--stock", "5",
                  "--waitlist-length", "100", "-u", "30", "-r", "30", "-t", "4s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sold_out" in run.stdout
    assert "/v1/campaigns/[id]/waitlist" in run.stdout + run.stderr  # (the stats table)


def test_waiting_room_smoke(service: Service) -> None:
    run = _locust(service, "waiting_room.py", "--campaign", "room", "--stock", "10",
                  "--crowd", "40", "--ramp-seconds", "1", "--hold-seconds", "4",
                  "--admission-rate", "20")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "admitted" in run.stdout
    assert "/v1/campaigns/[id]/queue/me" in run.stdout + run.stderr


def test_thresholds_fail_the_run(service: Service) -> None:
    # An impossible p99 budget must make the headless run exit non-zero.
    run = _locust(service, "steady_shopping.py", "--campaign", "strict", "-u", "5", "-r", "5",
                  "-t", "2s", "--max-p99-ms", "0.001")
    assert run.returncode == 1, run.stdout + run.stderr


def test_humans_vs_bots_smoke(service: Service) -> None:
    # Bots can take at most 3 farms x 2 devices x 3 accounts = 18 of the 40 units with the
    # protection on (they take all of them with it off): 75% fails only a broken guard.
    run = _locust(service, "humans_vs_bots.py", "--campaign", "fair", "--stock", "40",
                  "--per-user", "1", "-u", "63", "-r", "63", "-t", "5s", "--farms", "3",
                  "--protection", "on", "--max-bot-share", "0.75")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "bots took" in run.stdout and "humans wrongly refused" in run.stdout


def test_coupon_rush_smoke(service: Service) -> None:
    run = _locust(service, "coupon_rush.py", "--campaign", "rush", "--sku", "five",
                  "--stock", "40", "--per-user", "5", "-u", "20", "-r", "20", "-t", "3s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sold_out" in run.stdout and "ok" in run.stdout
    status, body = http(f"{service.admin_url}/admin/v1/campaigns/rush/coupons/stats",
                        {"Authorization": f"Bearer {service.admin_token()}"})
    totals: Any = body["totals"]
    assert status == 200 and totals["issued"] == 40 and totals["redeemed"] > 0
