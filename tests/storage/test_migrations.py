"""The migrations build exactly the schema the store declares, and go down and up again."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from screening.storage.migrate import alembic_config
from screening.storage.migrate import migrate
from screening.storage.store import make_engine
from screening.storage.store import metadata
from tests.support.app import BOTH_DATABASES

pytestmark = BOTH_DATABASES


def _differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_the_last_migration_goes_down_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "-1")
        assert _differences(engine) != []
        migrate(engine)
        assert _differences(engine) == []
    finally:
        engine.dispose()
