"""SqliteBatch: queued writes reach SQLite in order, before the next read, in the
transaction; a failing write fails the transaction (nothing of it is kept)."""

from pathlib import Path

import pytest
from sqlalchemy import text

from stampede.durable.store import open_store
from stampede.durable.store.sqlite_batch import SqliteBatch


async def test_writes_go_in_order_before_the_next_read(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/s.db", migrate=False)
    try:
        async with store.begin() as conn:
            await conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
        async with store.begin() as conn:
            batch = SqliteBatch(conn)
            batch.write("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b")])
            batch.write("UPDATE t SET v = ? WHERE k = ?", ("c", 2))
            assert await batch.read("SELECT k, v FROM t ORDER BY k", ()) == [
                {"k": 1, "v": "a"}, {"k": 2, "v": "c"}]
            batch.write("DELETE FROM t WHERE k = ?", (1,))
            await batch.flush()
            # the Core connection of the same transaction sees what was sent
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 1
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("SELECT k, v FROM t"))).all() == [(2, "c")]
    finally:
        await store.close()


async def test_a_failing_write_fails_the_whole_transaction(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/s.db", migrate=False)
    try:
        async with store.begin() as conn:
            await conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
        with pytest.raises(Exception, match="UNIQUE"):
            async with store.begin() as conn:
                batch = SqliteBatch(conn)
                batch.write("INSERT INTO t VALUES (?)", [(1,), (2,)])
                batch.write("INSERT INTO t VALUES (?)", (1,))  # a duplicate key
                await batch.flush()
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    finally:
        await store.close()
