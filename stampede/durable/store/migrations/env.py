"""Alembic environment: migrations run on a connection the store hands over.

`stampede.durable.store.db.Store.migrate` opens the connection (async engine, run_sync)
and takes a migration lock first, so several processes starting at once
upgrade the schema exactly once.
"""

from alembic import context

from stampede.durable.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
