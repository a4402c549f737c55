"""The database connection: engines with this service's SQLite settings, SQLite's planner
statistics, one writer at a time on SQLite, and the canonical JSON digest.

SQLite runs in WAL mode with foreign keys on and every commit flushed to disk; a writer
takes the write lock up front (``BEGIN IMMEDIATE``) and writers of all processes queue on
a file lock beside the database. PostgreSQL runs through psycopg 3.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

#: A result row of any shape (its columns are read by name).
AnyRow = sa.Row[*tuple[Any, ...]]

logger = logging.getLogger(__name__)


def json_digest(value: Any) -> str:
    """The SHA-256 of ``value`` in one canonical JSON form (a screening's answers, a
    request's kind and body)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # FULL: every commit is flushed to disk (the WAL fsynced) before it returns, so an
    # acknowledged screening survives a crashed host, not only a crashed process. Group
    # commit (groupcommit.py) shares each flush among the requests writing at once.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE): a reader that
    # later tries to write could otherwise deadlock with another and fail at once
    # instead of waiting for busy_timeout.
    immediate = connection.get_execution_options().get("sqlite_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with this service's SQLite settings where they apply."""
    # hide_parameters: a failed statement's message must never carry answers or notes.
    engine = sa.create_engine(
        url,
        pool_pre_ping=not url.startswith("sqlite"),
        hide_parameters=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


#: Rows ANALYZE reads per index on SQLite: enough for the planner to tell a selective index
#: from a poor one, and a few milliseconds however large the table (SQLite's advice for
#: ``PRAGMA optimize`` on large databases).
SQLITE_ANALYSIS_LIMIT = 1000


def refresh_sqlite_statistics(engine: Engine) -> None:
    """Give SQLite's planner statistics for the tables as they are now (``sqlite_stat1``).

    SQLite gathers none itself, and without them guesses which index a query should use;
    run after migrations and when an app starts (gunicorn workers restart now and then, so
    the statistics follow the tables' growth). A database file that does not exist yet is
    left alone, and a busy database is left for next time. PostgreSQL's autovacuum keeps
    its own statistics.
    """
    if engine.dialect.name != "sqlite":
        return
    database = engine.url.database
    if database and database != ":memory:" and not Path(database).exists():
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    except sa.exc.OperationalError:
        logger.warning("SQLite planner statistics not refreshed: the database is busy")


def _json_dumps(value: Any) -> str:
    # orjson: a result with its trace is 10-15 kB, written on every POST.
    return orjson.dumps(value).decode()


class WriterLock:
    """One SQLite writer at a time across threads and processes, woken in turn.

    SQLite itself lets one writer in and makes the others poll, sleeping in steps of up
    to 100 ms. Threads of one process queue on a lock instead, and processes on an
    ``flock`` of a file beside the database, which the kernel hands to the next waiter as
    soon as the last writer lets go.
    """

    def __init__(self, database: str | None) -> None:
        self._threads = threading.Lock()
        self._path = f"{database}.writer-lock" if database else None
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._path is None:
            return
        try:
            if self._pid != os.getpid():
                # Opened per process: a lock inherited across fork would be shared.
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            assert self._fd is not None
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None and self._path is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()
