"""A real Valkey for the micro-benchmarks (they are not part of the test suite)."""

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stampede.runtime.valkey import EmbeddedValkey


@pytest.fixture(scope="session")
def valkey() -> Iterator["redis.Redis[str]"]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp))
        url = server.start()
        client: redis.Redis[str] = redis.Redis.from_url(url, decode_responses=True)
        try:
            yield client
        finally:
            client.close()
            server.stop()
