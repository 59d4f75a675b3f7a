"""The durable store: schema, alembic migrations and the SQLite/PostgreSQL backend."""

from stampede.durable.store.db import Store, async_url, open_store

__all__ = ["Store", "async_url", "open_store"]
