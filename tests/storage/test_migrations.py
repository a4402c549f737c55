"""The migrations build exactly the schema the store declares, and go down and up again."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from screening import PROJECT_ROOT
from screening.storage.database import make_engine
from screening.storage.migrate import alembic_config
from screening.storage.migrate import migrate
from screening.storage.tables import metadata
from tests.support.app import BOTH_DATABASES
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app

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
@pytest.mark.parametrize(
    ("before", "revision", "name"),
    [
        ("0007", "0008", "ix_screenings_ruleset_id_ruleset_version_created_at"),
        ("0008", "0009", "ix_screenings_review_status_outcome_created_at_id"),
        ("0008", "0009", "ix_screenings_ruleset_id_created_at_id"),
        ("0008", "0009", "ix_screenings_review_status_created_at_id"),
    ],
)
def test_an_index_on_screenings_is_built_outside_a_transaction_replacing_a_failed_build(
    database_url: str, before: str, revision: str, name: str
) -> None:
    engine = make_engine(database_url)
    statements: list[str] = []

    def seen(_conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if "INDEX" in statement and name in statement:
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        _downgrade(engine, before)
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
        migrate(engine, revision)
        assert _index_valid(engine, name) is True
        migrate(engine)
        assert _differences(engine) == []
        assert [sql.split()[:3] for sql in statements[:2]] == [
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


def test_sqlite_gets_planner_statistics_after_migrations_and_when_an_app_starts(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'screening.db'}"
    engine = make_engine(url)

    def analysed() -> set[str]:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT idx FROM sqlite_stat1 WHERE tbl = 'screenings'"
            ).all()
        return {row[0] for row in rows}

    try:
        migrate(engine)
        # The table is empty: ANALYZE ran (sqlite_stat1 exists) but found nothing to count.
        assert analysed() == set()
        with make_app(url) as app:
            client = app.test_client()
            for pain in (3, 7):
                body = {"answers": {**base_answers(), "pain_intensity": pain}}
                response = client.post("/v1/screenings", json=body, headers=bearer("dr-c"))
                assert response.status_code == 201
        # The next app to start (a gunicorn worker restarting) counts what is there now.
        with make_app(url):
            pass
        assert "ix_screenings_review_status_outcome_created_at_id" in analysed()
    finally:
        engine.dispose()


def test_no_migration_imports_the_live_code() -> None:
    """A revision keeps building what it built when the code beside it changes: it holds
    its own column types (and the one function 0007's data step needs)."""
    versions = PROJECT_ROOT / "screening" / "storage" / "migrations" / "versions"
    revisions = sorted(versions.glob("0*.py"))
    assert len(revisions) >= 7
    for path in revisions:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name.split(".")[0] == "screening"}, path.name
