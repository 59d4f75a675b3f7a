"""The locust scenarios, run headless for seconds against a real service, so they never rot."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.service import Service, http

LOCUST = str(Path(sys.executable).parent / "locust")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("locust"))
    try:
        yield svc
    finally:
        svc.kill()


def _locust(service: Service, scenario: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCUST, "-f", str(ROOT / "loadtest" / scenario), "--headless", "--only-summary",
         "--host", service.url, "--admin-url", service.admin_url,
         "--admin-token", service.admin_token(), "--create-campaign", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_opening_spike_smoke(service: Service) -> None:
    run = _locust(service, "opening_spike.py", "--campaign", "spike", "--stock", "30",
                  "--spike-users", "60", "--spike-seconds", "1", "--hold-seconds", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sold_out" in run.stdout and "ok" in run.stdout


def test_steady_shopping_smoke(service: Service) -> None:
    run = _locust(service, "steady_shopping.py", "--campaign", "steady", "-u", "20", "-r", "20",
                  "-t", "3s")
    assert run.returncode == 0, run.stdout + run.stderr


def test_thresholds_fail_the_run(service: Service) -> None:
    # An impossible p99 budget must make the headless run exit non-zero.
    run = _locust(service, "steady_shopping.py", "--campaign", "strict", "-u", "5", "-r", "5",
                  "-t", "2s", "--max-p99-ms", "0.001")
    assert run.returncode == 1, run.stdout + run.stderr


def test_coupon_rush_smoke(service: Service) -> None:
    run = _locust(service, "coupon_rush.py", "--campaign", "rush", "--sku", "five",
                  "--stock", "40", "--per-user", "5", "-u", "20", "-r", "20", "-t", "3s")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "sold_out" in run.stdout and "ok" in run.stdout
    status, body = http(f"{service.admin_url}/admin/v1/campaigns/rush/coupons/stats",
                        {"Authorization": f"Bearer {service.admin_token()}"})
    totals: Any = body["totals"]
    assert status == 200 and totals["issued"] == 40 and totals["redeemed"] > 0
