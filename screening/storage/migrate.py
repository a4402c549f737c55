"""Run the Alembic migrations shipped in ``screening/migrations``."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from screening.storage.database import refresh_sqlite_statistics


def alembic_config() -> Config:
    """An Alembic configuration pointing at the package's migrations."""
    config = Config()
    config.set_main_option("script_location", "screening.storage:migrations")
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision``.

    Each migration commits on its own (``env.py``), so one may build an index outside a
    transaction; a migration that fails leaves the database at the one before it.
    """
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    # Planner statistics for the tables as they are now (SQLite gathers none itself).
    refresh_sqlite_statistics(engine)
