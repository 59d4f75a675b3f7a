"""A real `stampede serve` (dev auth) for the page tests, and the browser fixtures."""

from collections.abc import Iterator

import pytest

from tests.browser import browser, page  # noqa: F401  (pytest fixtures)
from tests.system.service import Service

PARTNER_KEY = "partner-key-0123456789"
"""The partner channel's API key of the page tests' service."""


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("frontend"),
                  env={"STAMPEDE_DEV_AUTH": "1", "STAMPEDE_CHANNEL_KEYS": f"partner={PARTNER_KEY}"})
    try:
        yield svc
    finally:
        svc.kill()
    assert "Traceback" not in svc.output()
