"""The database handle every repository writes through: the engine, write transactions
(one writer at a time on SQLite), group commit and this database's INSERT.

Each aggregate's statements live in a module of its own: ``screenings``, ``idempotency``,
``audit``, ``sessions``, ``cds`` and ``outbox``; ``tables`` holds the tables and
``database`` the engine's settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextlib import contextmanager
from contextlib import nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from screening.storage.audit import AuditRepository
from screening.storage.cds import CdsRepository
from screening.storage.database import WriterLock
from screening.storage.groupcommit import EachAlone
from screening.storage.groupcommit import GroupCommit
from screening.storage.idempotency import IdempotencyRepository
from screening.storage.screenings import ScreeningRepository
from screening.storage.sessions import SessionRepository


class Store:
    """The database: where every repository's statements run."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        sqlite_file = engine.dialect.name == "sqlite"
        self._insert = sqlite.insert if sqlite_file else postgresql.insert
        #: Whether a screening and its audit and outbox rows go in as one statement: a
        #: round trip saved per row on PostgreSQL; SQLite has no INSERT in a WITH clause
        #: (and no network between the statements).
        self.one_statement = engine.dialect.name == "postgresql"
        database = engine.url.database if sqlite_file else None
        self._writers: AbstractContextManager[Any] = (
            WriterLock(database if database and database != ":memory:" else None)
            if sqlite_file
            else nullcontext()
        )
        #: SQLite: the writes each request makes (screenings, claims, reviews, audit
        #: entries) commit in groups, one flush to disk for all the requests writing at
        #: once. PostgreSQL groups the WAL flushes of concurrent sessions itself.
        self.grouped: GroupCommit | EachAlone = (
            GroupCommit(self.transaction) if sqlite_file else EachAlone(self.transaction)
        )
        # Each aggregate's statements, all writing through this store.
        self.screenings = ScreeningRepository(self)
        self.idempotency = IdempotencyRepository(self)
        self.audit = AuditRepository(self)
        self.sessions = SessionRepository(self)
        self.cds = CdsRepository(self)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite, one writer at a time)."""
        with self._writers, self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def insert_statement(self, table: sa.Table) -> Any:
        """This database's INSERT, with its ON CONFLICT clause (SQLite or PostgreSQL)."""
        return self._insert(table)

    def ping(self) -> None:
        """Raise unless the database answers ``SELECT 1``."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def upgrade(self, revision: str = "head") -> None:
        """Apply the schema migrations up to ``revision``."""
        # Alembic is imported here, not at the top: importing it took a tenth of a
        # second of every worker's and command's start-up, and only this uses it.
        from screening.storage.migrate import migrate

        migrate(self.engine, revision)

    def insert_rows(
        self, conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, object]]
    ) -> None:
        """Insert ``rows`` into ``table`` (SQLAlchemy's executemany for several)."""
        conn.execute(table.insert(), list(rows))
