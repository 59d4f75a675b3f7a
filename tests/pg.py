"""PostgreSQL for the tests: STAMPEDE_TEST_PG_URL, else a throwaway cluster.

The cluster comes from stampede.runtime.postgres (initdb + pg_ctl as a non-root
user, created if missing); durability is switched off, as tests only need
the semantics. Without any PostgreSQL on the machine, its tests are skipped.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from stampede.runtime import postgres as harness

NO_PG = "no PostgreSQL: set STAMPEDE_TEST_PG_URL or install the initdb/postgres binaries"
_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def pg_available() -> bool:
    try:
        harness.pg_bin_dir()
    except FileNotFoundError:
        return False
    return True


@contextmanager
def pg_server() -> Iterator[str | None]:
    """The URL of a server the tests may create databases on (None: there is none)."""
    url = os.environ.get("STAMPEDE_TEST_PG_URL")
    if url:
        yield url
        return
    if not pg_available():
        yield None
        return
    with harness.postgres(settings=_FAST) as cluster:
        yield cluster.dsn


async def fresh_database(server_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _db = server_url.rpartition("/")
    return f"{base}/{name}"
