"""Alembic environment: migrations run on the connection the ``db`` command opens."""

from __future__ import annotations

from alembic import context

from screening.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite can't ALTER most things in place; batch mode rebuilds the table.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # One transaction per migration: a migration may need an autocommit block (PostgreSQL
    # builds an index CONCURRENTLY only outside a transaction, see 0008).
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
