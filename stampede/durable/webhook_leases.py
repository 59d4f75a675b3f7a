"""Leases: one delivery worker sends an endpoint's events at a time.

Several `stampede deliver` workers may share one store. Before sending an
endpoint anything a worker takes its lease: one statement, an INSERT that on
conflict updates the row only where it is expired or already ours, so of two
workers racing exactly one row changes (SQLite and PostgreSQL alike). The
lease is renewed while the worker sends, released when it stops, and simply
expires when it dies, so another worker takes over after at most `ttl_ms`.
A worker that loses its lease stops sending that endpoint at once: order per
campaign holds because only the holder sends.
"""

import os
import secrets
import socket
import time

from sqlalchemy import delete, or_
from sqlalchemy.dialects import postgresql, sqlite

from stampede.durable.store import Store
from stampede.durable.store import schema as t


class LeaseLost(Exception):
    """Another worker holds the endpoint now (ours expired): stop sending it."""


def new_owner() -> str:
    """This worker's name in the lease table: host, pid and a random part (a pid
    can be reused on another start)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    def __init__(self, store: Store, ttl_ms: int, owner: str | None = None) -> None:
        self.store, self.ttl_ms = store, ttl_ms
        self.owner = owner or new_owner()
        self.until: dict[str, int] = {}
        """Endpoint -> when our lease on it ends, as last taken or renewed."""

    async def take(self, endpoint_id: str) -> bool:
        """Takes or renews the lease on `endpoint_id`; False: another worker holds it."""
        now = _now_ms()
        until = now + self.ttl_ms
        leases = t.webhook_leases
        dialect = sqlite if self.store.is_sqlite else postgresql
        stmt = dialect.insert(leases).values(endpoint_id=endpoint_id, owner=self.owner,
                                             until_ms=until)
        stmt = stmt.on_conflict_do_update(
            index_elements=["endpoint_id"], set_={"owner": self.owner, "until_ms": until},
            where=or_(leases.c.owner == self.owner, leases.c.until_ms < now))
        async with self.store.begin() as conn:
            taken = (await conn.execute(stmt)).rowcount == 1
        if taken:
            self.until[endpoint_id] = until
        else:
            self.until.pop(endpoint_id, None)
        return taken

    async def keep(self, endpoint_id: str, margin_ms: int) -> None:
        """Before a send: renews the lease if less than `margin_ms` of it is left
        (an attempt takes at most the timeout); LeaseLost if it cannot be."""
        if self.until.get(endpoint_id, 0) - _now_ms() >= margin_ms:
            return
        if not await self.take(endpoint_id):
            raise LeaseLost(endpoint_id)

    async def release_all(self) -> None:
        """On shutdown: every lease we hold, free for the other workers at once."""
        async with self.store.begin() as conn:
            await conn.execute(delete(t.webhook_leases).where(
                t.webhook_leases.c.owner == self.owner))
        self.until.clear()


def _now_ms() -> int:
    return int(time.time() * 1000)
