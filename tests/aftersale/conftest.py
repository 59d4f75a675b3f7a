"""The after-sale tests use the gateway's real-socket apps and the real stores too."""

from tests.api.conftest import api  # noqa: F401
from tests.store.conftest import (  # noqa: F401
    persister,
    pg_server_url,
    raw_redis,
    sale,
    store_settings,
    store_url,
)
