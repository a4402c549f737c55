"""The database handle every repository writes through: the engine, write transactions
(one writer at a time on SQLite), group commit, this database's INSERT, and the inserts a
POST makes (through the driver on SQLite).

Each aggregate's statements live in a module of its own: ``screenings``, ``idempotency``,
``audit``, ``sessions``, ``cds`` and ``outbox``; ``tables`` holds the tables and
``database`` the engine's settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextlib import contextmanager
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from screening.storage.audit import AuditRepository
from screening.storage.cds import CdsRepository
from screening.storage.database import WriterLock
from screening.storage.groupcommit import GroupCommit
from screening.storage.idempotency import IdempotencyRepository
from screening.storage.screenings import ScreeningRepository
from screening.storage.sessions import SessionRepository
from screening.storage.tables import audit_log
from screening.storage.tables import screenings
from screening.storage.tables import webhook_deliveries


@dataclass(frozen=True, slots=True)
class _DriverInsert:
    """An INSERT of one table's columns that SQLAlchemy compiles once and the driver runs.

    On SQLite a POST's own inserts (the screening, its audit entry, its outbox rows) cost
    more in SQLAlchemy's per-statement handling (parameters processed by name, an
    execution context, a result set up) than in SQLite itself: measured inside a POST's
    transaction, 20-45 us of SQLAlchemy on each, against 18-30 us for sqlite3's own
    insert of an audit or outbox row. This keeps SQLAlchemy's SQL and its type processing
    (``UTCDateTime``, JSON) and hands the rows to the driver's ``executemany`` on the
    connection's open transaction (savepoints included). Errors are raised as SQLAlchemy
    raises them, parameters hidden, and a connection the driver reports closed is
    invalidated, as after any other statement (SQLAlchemy's ``handle_error`` events,
    which this service does not use, do not fire). Columns the database numbers itself
    are left out; a column missing from a row is NULL, as with SQLAlchemy.
    """

    sql: str
    #: Each positional parameter's column name and bind processor (None: none needed).
    columns: tuple[tuple[str, Any], ...]

    @classmethod
    def compile(cls, table: sa.Table, dialect: sa.Dialect) -> _DriverInsert:
        columns = [c for c in table.c if c is not table.autoincrement_column]
        statement = table.insert().values(
            {c.name: sa.bindparam(c.name, type_=c.type) for c in columns}
        )
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        if dialect.paramstyle != "qmark" or sorted(names) != sorted(c.name for c in columns):
            raise ValueError(f"{dialect.name}: no positional INSERT for {table.name}")
        return cls(
            str(compiled),
            tuple(
                (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
                for name in names
            ),
        )

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts by column name)."""
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            # As SQLAlchemy binds: a value given (None too: JSON stores it as 'null') goes
            # through its type's processor; a column not given is NULL.
            values = [
                tuple(
                    None
                    if name not in row
                    else row[name]
                    if process is None
                    else process(row[name])
                    for name, process in self.columns
                )
                for row in rows
            ]
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.executemany(self.sql, values)
        except Exception as error:
            # What SQLAlchemy raises for the same failure: a DBAPIError subclass for the
            # driver's (IntegrityError, OperationalError...), a StatementError for a value
            # its type could not bind; parameters hidden either way.
            if isinstance(error, dbapi_error) and conn.dialect.is_disconnect(
                error, conn.connection, None
            ):
                conn.invalidate(error)
            raise sa.exc.DBAPIError.instance(
                self.sql, None, error, dbapi_error, hide_parameters=True, dialect=conn.dialect
            ) from error


#: The tables a POST inserts into, which SQLite writes through ``_DriverInsert``.
_DRIVER_TABLES = (screenings, audit_log, webhook_deliveries)


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
        #: SQLite: the request path's inserts through the driver (``_DriverInsert``).
        self._driver_inserts = (
            {t.name: _DriverInsert.compile(t, engine.dialect) for t in _DRIVER_TABLES}
            if sqlite_file
            else {}
        )
        #: The writes each request makes (screenings, claims, reviews, audit entries)
        #: commit in groups: one flush to disk for all the requests writing at once.
        self.grouped = GroupCommit(self.transaction)
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
        self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Insert ``rows`` into ``table``: through the driver where compiled for it."""
        driver = self._driver_inserts.get(table.name)
        if driver is not None:
            driver.run(conn, rows)
        else:
            conn.execute(table.insert(), list(rows))
