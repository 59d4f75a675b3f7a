"""One SQLite transaction's statements sent to the driver's thread together.

aiosqlite runs every call in a thread of its own, and SQLAlchemy's adapter
makes three or four calls per statement (cursor, execute, fetch, close):
each a queue hand-off and a loop wake-up. The persister's transaction is
about eight statements, so a batch paid ~50 hand-offs, ~3 ms of CPU on the
2-core bench VM whatever its size: at the ~100-event batches of a live
service that was more than the inserts themselves (bench/README.md).

`SqliteBatch` wraps the transaction's connection: a write is queued, and the
queue goes to the driver's thread in one call, in order, before the next
read (with that read) or at `flush()`. Writes and reads stay in the order
they were issued, in the same transaction, on the same connection; an error
in a queued write is raised by the call that sends it, inside the
transaction, which then rolls back as it would have.
"""

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

Row = dict[str, Any]
_Write = tuple[str, Any]


def _run(db: sqlite3.Connection, writes: Sequence[_Write],
         read: tuple[str, Any] | None) -> list[Row]:
    """In the driver's thread: the queued writes in order, then the read (if any)."""
    cursor = db.cursor()
    try:
        for sql, params in writes:
            if isinstance(params, list):
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params or ())
        if read is None:
            return []
        cursor.execute(read[0], read[1] or ())
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    finally:
        cursor.close()


class SqliteBatch:
    """The SQLite transaction `conn` (already begun), its writes sent together."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._writes: list[_Write] = []

    @property
    def dialect(self) -> Dialect:
        return self.conn.dialect

    def write(self, sql: str, params: Any = None) -> None:
        """Queue a write: driver SQL with a tuple of parameters, or a list of tuples
        (executemany)."""
        self._writes.append((sql, params))

    async def read(self, sql: str, params: Any = None) -> list[Row]:
        """The rows of a read, as dicts, sent with the writes queued before it."""
        return await self._send(read=(sql, params))

    async def flush(self) -> None:
        """Send the queued writes (before a statement that does not go through here,
        and at the end of the transaction)."""
        if self._writes:
            await self._send(None)

    async def _send(self, read: tuple[str, Any] | None) -> list[Row]:
        writes, self._writes = self._writes, []
        raw = await self.conn.get_raw_connection()
        driver = raw.driver_connection  # the aiosqlite.Connection of this transaction
        assert driver is not None
        # aiosqlite runs `fn` in the thread that owns the sqlite3 connection: the
        # one way to make several calls in a single hand-off (pinned version).
        rows: list[Row] = await driver._execute(_run, driver._conn, writes, read)
        return rows
