"""The migrations build exactly the schema the store declares, and go down and up again."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from screening.storage.migrate import alembic_config
from screening.storage.migrate import migrate
from screening.storage.store import make_engine
from screening.storage.store import metadata
from tests.support.app import BOTH_DATABASES

#: The PostgreSQL database alone (what only PostgreSQL does).
POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def _differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


@BOTH_DATABASES
def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert _differences(engine) == []
    finally:
        engine.dispose()


def _index_valid(engine: sa.Engine, name: str) -> bool | None:
    """Whether PostgreSQL may use the index ``name`` (None: there is none)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name AND pg_table_is_visible(c.oid)"
            ),
            {"name": name},
        ).scalar()


@POSTGRES_ONLY
def test_the_ruleset_index_is_built_outside_a_transaction_replacing_a_failed_build(
    database_url: str,
) -> None:
    name = "ix_screenings_ruleset_id_ruleset_version_created_at"
    engine = make_engine(database_url)
    statements: list[str] = []

    def seen(_conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if "INDEX" in statement:
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        _downgrade(engine, "0007")
        assert _index_valid(engine, name) is None
        # What a concurrent build stopped halfway leaves: an index marked invalid.
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE INDEX {name} ON screenings (ruleset_id)"))
            conn.execute(
                sa.text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = :n ::regclass"),
                {"n": name},
            )
        assert _index_valid(engine, name) is False
        statements.clear()
        # PostgreSQL refuses CONCURRENTLY inside a transaction block: this passing is the
        # proof that the build ran outside one.
        migrate(engine)
        assert _index_valid(engine, name) is True
        assert _differences(engine) == []
        assert [sql.split()[:3] for sql in statements] == [
            ["DROP", "INDEX", "CONCURRENTLY"],
            ["CREATE", "INDEX", "CONCURRENTLY"],
        ]
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
        engine.dispose()


def _downgrade(engine: sa.Engine, revision: str) -> None:
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


@BOTH_DATABASES
def test_the_last_migration_goes_down_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        _downgrade(engine, "-1")
        assert _differences(engine) != []
        migrate(engine)
        assert _differences(engine) == []
    finally:
        engine.dispose()
