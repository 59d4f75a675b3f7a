"""`Store`: the durable store behind one URL, SQLite (default) or PostgreSQL.

SQLite runs in WAL mode with synchronous=FULL (a commit survives power
loss) and takes the write lock at BEGIN (IMMEDIATE), so a transaction's reads
are never stale against another process's write. PostgreSQL serialises the
writers of one campaign with a row lock on its `campaigns` row.
"""

import asyncio
import fcntl
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from stampede.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "stampede_read_only"
"""The execution option `Store.read()` sets on its connection."""
_PG_MIGRATION_LOCK = 0x5354414D  # "STAM": one advisory lock id for schema upgrades


def async_url(url: str) -> str:
    """The SQLAlchemy URL of a store URL: sqlite:///path or postgresql://..."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise ConfigError(f"store URL must be sqlite:///<path> or postgresql://..., not {url!r}")


def _sqlite_path(url: str) -> Path | None:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = _make_engine(async_url(url))
        self.dialect = self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def insert_ignore(self, table: Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING, in this backend's dialect."""
        dialect = sqlite if self.is_sqlite else postgresql
        return dialect.insert(table).on_conflict_do_nothing()

    async def ping(self, timeout_s: float = 1.0) -> bool:
        """Can we reach the store right now? (for /readyz)"""
        try:
            async with asyncio.timeout(timeout_s):
                async with self.read() as conn:  # never waits for a writer's lock
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any failure means not ready
            return False

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """One read-only transaction: a snapshot that never takes SQLite's write lock,
        so lookups and exports do not queue behind (or hold up) the persister."""
        async with self.engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            yield conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (on SQLite it holds the write lock from the start)."""
        async with self.engine.begin() as conn:
            yield conn

    async def migrate(self) -> None:
        """Upgrade the schema to the newest migration, once, whoever else starts."""
        path = _sqlite_path(self.url) if self.is_sqlite else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # SQLite: a file lock beside the database serialises upgrades.
            with open(f"{path}.migrate.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                await self._upgrade()
            return
        await self._upgrade()

    async def _upgrade(self) -> None:
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
            await conn.run_sync(_run_alembic)

    async def close(self) -> None:
        await self.engine.dispose()


def _run_alembic(conn: Connection) -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per start is noise
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def _make_engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
    engine = create_async_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver: we emit BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=60000")
        # Up to 64 MiB of pages (default 2 MiB): the persister's inserts land at
        # random places in the claim indexes, and past the default cache each one
        # re-reads its page from the OS (bench.bench_persister).
        cursor.execute("PRAGMA cache_size=-65536")
        # Checkpoint every 16,000 WAL pages (64 MiB at 4 KiB), not 1,000: a page the
        # persister dirties in many commits is copied into the database once.
        cursor.execute("PRAGMA wal_autocheckpoint=16000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A reader's BEGIN is deferred: in WAL mode it reads a snapshot, lock-free.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


async def open_store(url: str, migrate: bool = True) -> Store:
    store = Store(url)
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store


__all__ = ["Store", "async_url", "open_store"]
