"""The sharded suites use the gateway's real-socket apps too."""

from tests.api.conftest import api  # noqa: F401
