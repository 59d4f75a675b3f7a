"""A real `stampede serve` (dev auth) for the page tests, and the browser fixtures."""

from collections.abc import Iterator

import pytest

from tests.browser import browser, page  # noqa: F401  (pytest fixtures)
from tests.system.service import Service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("frontend"), env={"STAMPEDE_DEV_AUTH": "1"})
    try:
        yield svc
    finally:
        svc.kill()
    assert "Traceback" not in svc.output()
