"""Storage with SQLAlchemy Core: screenings, reviews, idempotency records, audit log,
the review pages' sign-in sessions, the webhook outbox (its queries live in ``outbox.py``)
and CDS Hooks' token ids, cards and feedback.

SQLite (the embedded default, in WAL mode with foreign keys on) and PostgreSQL
(production, through psycopg 3) run the same statements. Idempotency relies on
the database: a record is claimed by an insert that a primary key makes unique,
never by a check followed by an insert, so racing requests cannot both win.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import functools
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextlib import contextmanager
from contextlib import nullcontext
from dataclasses import dataclass
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from screening.storage.groupcommit import GroupCommit

logger = logging.getLogger(__name__)

IDEMPOTENCY_TTL = timedelta(hours=24)
#: An in-progress idempotency record older than this was left by a request that
#: died mid-way (a killed worker); a retry may take it over.
IDEMPOTENCY_STALE_AFTER = timedelta(seconds=30)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

screenings = sa.Table(
    "screenings",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("patient_ref", sa.String(64)),
    sa.Column("language", sa.String(8), nullable=False),
    sa.Column("questionnaire_id", sa.String(64), nullable=False),
    sa.Column("questionnaire_version", sa.String(32), nullable=False),
    sa.Column("questionnaire_sha256", sa.String(64), nullable=False),
    sa.Column("ruleset_id", sa.String(64), nullable=False),
    sa.Column("ruleset_version", sa.String(32), nullable=False),
    sa.Column("ruleset_sha256", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("review_status", sa.String(16), nullable=False),
    sa.Column("answers", JSONDocument, nullable=False),
    # outcome, decided_by, matched_rules, summary and trace, as computed at
    # submission: a stored result is never recomputed.
    sa.Column("result", JSONDocument, nullable=False),
    # The document the answers came in, when it was not native JSON (FHIR).
    sa.Column("source", JSONDocument),
    # ``json_digest(answers)``: finds the stored screening a CDS card describes.
    sa.Column("answers_sha256", sa.String(64)),
    # Each list order is (created_at, id): an index that ends with both serves a page of
    # its filter by reading only that page's rows.
    sa.Index(None, "created_at", "id"),
    sa.Index(None, "outcome", "created_at", "id"),
    sa.Index(None, "review_status", "created_at", "id"),
    sa.Index(None, "patient_ref"),
    sa.Index(None, "answers_sha256"),
    sa.Index(None, "ruleset_id", "ruleset_version", "created_at", "id"),
    # Triage's first bands, the overdue gauge and scan, and a pending list of one outcome.
    sa.Index(None, "review_status", "outcome", "created_at", "id"),
    # The list of one ruleset (any version), newest first or in created order.
    sa.Index(None, "ruleset_id", "created_at", "id"),
)

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "screening_id",
        sa.String(32),
        sa.ForeignKey("screenings.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("note", sa.Text),
)

idempotency_records = sa.Table(
    "idempotency_records",
    metadata,
    sa.Column("key_name", sa.String(64), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    # Which request holds an in-progress claim: only its holder may finish or release it.
    sa.Column("claim", sa.String(32), nullable=False),
    sa.Column("locked_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("status_code", sa.Integer),
    sa.Column("response_body", sa.Text),
    sa.Column(
        "screening_id",
        sa.String(32),
        sa.ForeignKey("screenings.id", ondelete="CASCADE"),
        index=True,
    ),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    # A key's name, or a CDS client's issuer (up to 255 characters).
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    # No foreign key: the trail of a screening outlives the screening (purge).
    sa.Column("screening_id", sa.String(32), index=True),
    sa.Index(None, "at"),
)


review_sessions = sa.Table(
    "review_sessions",
    metadata,
    # The SHA-256 of the session's token: the cookie holds the token, the table never does.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(64), nullable=False, index=True),
    # Ties the session to the key's token and the cookie secret as they were at sign-in.
    sa.Column("key_check", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    # The absolute end, however busy the session is kept.
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)


webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The Standard Webhooks message id: the same for every endpoint and every retry.
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    # No foreign key and no index of its own: each would cost every POST another page
    # written at commit. Purge deletes a screening's deliveries explicitly.
    sa.Column("screening_id", sa.String(32), nullable=False),
    # The body exactly as it is sent (and signed) on every attempt.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # When the current retry schedule began: at the event, or at a manual retry.
    sa.Column("scheduled_at", UTCDateTime(), nullable=False),
    # Due from then; while a worker holds the row, the end of its lease.
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("lease", sa.String(32)),
    sa.Column("last_attempt_at", UTCDateTime()),
    sa.Column("last_result", sa.String(64)),
    sa.Column("delivered_at", UTCDateTime()),
    sa.Index(None, "status", "next_attempt_at"),
)

#: Urgent screenings whose review is overdue and whose overdue event was recorded:
#: the primary key lets it happen once, whatever number of workers look.
overdue_reviews = sa.Table(
    "overdue_reviews",
    metadata,
    sa.Column(
        "screening_id",
        sa.String(32),
        sa.ForeignKey("screenings.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("noticed_at", UTCDateTime(), nullable=False),
)

#: How far the overdue scan has got (every urgent screening created up to ``covered_until``
#: was looked at), per set of urgent outcomes, so that a worker that starts again goes on
#: from there instead of reading every overdue screening still unreviewed.
overdue_progress = sa.Table(
    "overdue_progress",
    metadata,
    sa.Column("outcomes", sa.String(64), primary_key=True),
    sa.Column("covered_until", UTCDateTime(), nullable=False),
)


#: The ``jti`` of every EHR token accepted, until the token expires: the primary key
#: refuses a replay, whatever worker or instance it reaches.
cds_token_ids = sa.Table(
    "cds_token_ids",
    metadata,
    sa.Column("issuer", sa.String(255), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)

#: Every CDS card shown, by its uuid: what it said and about which patient and screening.
cds_cards = sa.Table(
    "cds_cards",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("shown_at", UTCDateTime(), nullable=False, index=True),
    # The EHR's issuer, or the clinician key's name.
    sa.Column("caller", sa.String(255), nullable=False),
    sa.Column("hook_instance", sa.String(255), nullable=False),
    # The EHR's patient id (context.patientId): deleted with the card by purge.
    sa.Column("patient_id", sa.String(255), nullable=False),
    # No foreign key: purge deletes a screening's cards explicitly, on any database.
    sa.Column("screening_id", sa.String(32), index=True),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("indicator", sa.String(16), nullable=False),
    sa.Column("summary", sa.String(140), nullable=False),
)

#: CDS Hooks feedback, one row per entry; ``known`` is false for a card uuid never shown.
cds_feedback = sa.Table(
    "cds_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("caller", sa.String(255), nullable=False),
    sa.Column("card_uuid", sa.String(64), nullable=False),
    sa.Column("known", sa.Boolean, nullable=False),
    sa.Column("screening_id", sa.String(32), index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("outcome_at", UTCDateTime(), nullable=False),
    sa.Column("accepted_suggestions", JSONDocument, nullable=False),
    sa.Column("override_reason", JSONDocument),
    sa.Column("user_comment", sa.Text),
)


def json_digest(value: Any) -> str:
    """The SHA-256 of ``value`` in one canonical JSON form (a screening's answers, a
    request's kind and body)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


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


_FINISH_IDEMPOTENCY = idempotency_records.update().where(
    (idempotency_records.c.key_name == sa.bindparam("k_name"))
    & (idempotency_records.c.idempotency_key == sa.bindparam("k_key"))
    & (idempotency_records.c.claim == sa.bindparam("k_claim"))
    & (idempotency_records.c.state == "in_progress")
)

#: The tables a POST inserts into, which SQLite writes through ``_DriverInsert``.
_DRIVER_TABLES = (screenings, audit_log, webhook_deliveries)

_DELIVERY_COLUMNS = tuple(c for c in webhook_deliveries.c if c.name != "id")


@functools.cache
def _insert_screening_with_events(deliveries: int) -> sa.Insert:
    """PostgreSQL: a screening, its audit entry and ``deliveries`` outbox rows in one
    statement (data-modifying CTEs), so the outbox costs a POST no round trip of its own.

    Parameters: ``s_<column>`` for the screening, ``d<n>_<column>`` for each delivery.
    Rows are given as selects of parameters, not a multi-row VALUES: SQLAlchemy caches
    the compiled form of the one, never of the other.
    """
    c = screenings.c
    stored = (
        screenings.insert()
        .values({col.name: sa.bindparam(f"s_{col.name}", type_=col.type) for col in c})
        .returning(c.id, c.created_at, c.created_by)
        .cte("stored")
    )
    audit = audit_log.insert().from_select(
        ["at", "actor", "action", "screening_id"],
        sa.select(stored.c.created_at, stored.c.created_by, sa.literal("create"), stored.c.id),
    )
    if not deliveries:
        return audit.add_cte(stored)
    rows = [
        sa.select(*(sa.bindparam(f"d{n}_{col.name}", type_=col.type) for col in _DELIVERY_COLUMNS))
        for n in range(deliveries)
    ]
    return (
        webhook_deliveries.insert()
        .from_select(
            [col.name for col in _DELIVERY_COLUMNS],
            rows[0] if deliveries == 1 else sa.union_all(*rows),
        )
        .add_cte(stored, audit.cte("audited"))
    )


def _screening_with_events_parameters(
    row: dict[str, Any], deliveries: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The parameters of ``_insert_screening_with_events(len(deliveries))``."""
    parameters = {f"s_{col.name}": row.get(col.name) for col in screenings.c}
    for n, delivery in enumerate(deliveries):
        parameters.update({f"d{n}_{col.name}": delivery.get(col.name) for col in _DELIVERY_COLUMNS})
    return parameters


class ClaimLost(Exception):
    """Another request took over this request's stale Idempotency-Key claim."""


class CursorError(ValueError):
    """A list cursor that this service did not issue."""


def _pack(values: list[Any]) -> str:
    raw = json.dumps(values).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(cursor: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CursorError("not a cursor") from None


def _position(stamp: Any, screening_id: Any) -> tuple[datetime, str]:
    """A cursor's moment and screening id, checked."""
    try:
        moment = datetime.fromisoformat(stamp)
    except (ValueError, TypeError):
        raise CursorError("not a cursor") from None
    # The encoders write UTC times and ascii ids; anything else (a NUL, a
    # surrogate, a time UTC can't hold) would fail in the database, not here.
    if (
        not isinstance(screening_id, str)
        or not (screening_id.isascii() and screening_id.isprintable())
        or moment.utcoffset() != timedelta(0)
    ):
        raise CursorError("not a cursor")
    return moment, screening_id


def encode_cursor(created_at: datetime, screening_id: str) -> str:
    """An opaque cursor pointing just after one screening in newest-first order."""
    return _pack([created_at.isoformat(), screening_id])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Undo ``encode_cursor``; raise ``CursorError`` for anything else."""
    values = _unpack(cursor)
    if not isinstance(values, list) or len(values) != 2:
        raise CursorError("not a cursor")
    return _position(*values)


def encode_triage_cursor(band: int, created_at: datetime, screening_id: str) -> str:
    """An opaque cursor pointing just after one screening in triage order."""
    return _pack([band, created_at.isoformat(), screening_id])


def decode_triage_cursor(cursor: str) -> tuple[int, datetime, str]:
    """Undo ``encode_triage_cursor``; raise ``CursorError`` for anything else,
    a newest-first cursor included."""
    values = _unpack(cursor)
    if not isinstance(values, list) or len(values) != 3:
        raise CursorError("not a cursor")
    band = values[0]
    if type(band) is not int or not 0 <= band <= 2:
        raise CursorError("not a cursor")
    return (band, *_position(values[1], values[2]))


@dataclass(frozen=True, slots=True)
class TriageOrder:
    """Triage order's bands: pending ``urgent`` first, then pending ``see_doctor``, then
    the rest, oldest first within each."""

    urgent: tuple[str, ...]
    see_doctor: tuple[str, ...]


#: Where a list page ended: (created_at, id) newest first, (band, created_at, id) in triage.
Position = tuple[datetime, str] | tuple[int, datetime, str]


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of claiming an Idempotency-Key."""

    state: Literal["new", "replay", "in_flight", "mismatch"]
    status_code: int | None = None
    response_body: str | None = None
    #: For a "replay": the screening the first request stored.
    screening_id: str | None = None
    #: For a "new" claim: the token that proves this request holds it.
    token: str | None = None


@dataclass(frozen=True, slots=True)
class ListFilters:
    """The clinician list's filters."""

    outcome: str | None = None
    review_status: str | None = None
    patient_ref: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    ruleset_id: str | None = None
    ruleset_version: str | None = None


def _fixed(column: sa.Column[Any], value: str, ranged: bool) -> sa.ColumnElement[bool]:
    """``column`` equal to ``value``; ``ranged``: written as the one-value range it is.

    PostgreSQL drops a column compared with ``=`` from the ORDER BY as constant; as a range
    it keeps it there, where ``_index_prefix`` puts it to name the index a page reads.
    SQLite needs the ``=``: it reads a range as a range, and then sorts the page's rows.
    """
    return column.between(value, value) if ranged else column == value


def _index_prefix(filters: ListFilters) -> list[sa.Column[Any]]:
    """The columns the filters fix, in the order of the index that serves their list.

    Ordering by them first changes nothing (each holds one value) but names the index the
    page reads: the planner can't otherwise tell that the newest "reviewed" screenings lie
    far back in the (created_at, id) index, behind every recent pending one (on a table of
    a million, it read 82,000 rows to find 50).
    """
    c = screenings.c
    if filters.outcome is not None and filters.review_status is not None:
        return [c.review_status, c.outcome]
    if filters.outcome is not None:
        return [c.outcome]
    if filters.review_status is not None:
        return [c.review_status]
    if filters.ruleset_id is not None and filters.ruleset_version is not None:
        return [c.ruleset_id, c.ruleset_version]
    if filters.ruleset_id is not None:
        return [c.ruleset_id]
    return []


def _band_possible(outcomes: Sequence[str], filters: ListFilters) -> bool:
    """Whether a triage band of pending screenings with ``outcomes`` can hold a row the
    filters let through."""
    if not outcomes or filters.review_status not in (None, "pending"):
        return False
    return filters.outcome is None or filters.outcome in outcomes


def _position_key() -> sa.Tuple:
    """A screening's place in list order, as a row value: (created_at, id)."""
    return sa.tuple_(screenings.c.created_at, screenings.c.id)


def _position_value(created_at: Any, screening_id: Any) -> sa.Tuple:
    """A list position to compare ``_position_key()`` with, bound as the columns' types."""
    return sa.tuple_(
        sa.bindparam(None, created_at, type_=screenings.c.created_at.type),
        sa.bindparam(None, screening_id, type_=screenings.c.id.type),
    )


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _WriterLock:
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


class Store:
    """All database access of the service."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        sqlite_file = engine.dialect.name == "sqlite"
        self._insert = sqlite.insert if sqlite_file else postgresql.insert
        #: Whether a screening and its audit and outbox rows go in as one statement: a
        #: round trip saved per row on PostgreSQL; SQLite has no INSERT in a WITH clause
        #: (and no network between the statements).
        self._one_statement = engine.dialect.name == "postgresql"
        database = engine.url.database if sqlite_file else None
        self._writers: AbstractContextManager[Any] = (
            _WriterLock(database if database and database != ":memory:" else None)
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
        self._grouped = GroupCommit(self._write)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE on SQLite, one writer at a time)."""
        with self._writers, self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction, for the outbox's queries (``outbox.py``)."""
        return self._write()

    def insert_statement(self, table: sa.Table) -> Any:
        """This database's INSERT, with its ON CONFLICT clause (SQLite or PostgreSQL)."""
        return self._insert(table)

    def ping(self) -> None:
        """Raise unless the database answers ``SELECT 1``."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # --- idempotency ------------------------------------------------------------

    def claim_idempotency(self, key_name: str, key: str, request_hash: str) -> Claim:
        """Claim ``key`` for a request, or say what the first request with it did."""
        now = _utcnow()
        token = secrets.token_hex(16)
        table = idempotency_records
        mine = (table.c.key_name == key_name) & (table.c.idempotency_key == key)

        def claim(conn: Connection) -> Claim:
            # After 24 hours a key may be used afresh.
            conn.execute(table.delete().where(mine & (table.c.expires_at <= now)))
            # RETURNING says whether the row went in: psycopg reports no rowcount here.
            inserted = conn.execute(
                self._insert(table)
                .values(
                    key_name=key_name,
                    idempotency_key=key,
                    request_hash=request_hash,
                    state="in_progress",
                    claim=token,
                    locked_at=now,
                    expires_at=now + IDEMPOTENCY_TTL,
                )
                .on_conflict_do_nothing()
                .returning(table.c.key_name)
            ).first()
            if inserted is not None:
                return Claim("new", token=token)
            row = conn.execute(sa.select(table).where(mine)).one()
            if row.request_hash != request_hash:
                return Claim("mismatch")
            if row.state == "done":
                return Claim("replay", row.status_code, row.response_body, row.screening_id)
            if row.locked_at <= now - IDEMPOTENCY_STALE_AFTER:
                # The holder died mid-way (or stalls): take the claim over. The old
                # holder's token no longer matches, so it can neither finish nor release.
                taken = conn.execute(
                    table.update()
                    .where(mine & (table.c.state == "in_progress"))
                    .where(table.c.claim == row.claim)
                    .values(claim=token, locked_at=now)
                ).rowcount
                if taken == 1:
                    return Claim("new", token=token)
            return Claim("in_flight")

        return self._grouped.run(claim)

    def release_idempotency(self, key_name: str, key: str, token: str) -> None:
        """Forget this request's in-progress claim after it failed, so a retry runs afresh."""
        table = idempotency_records

        def release(conn: Connection) -> None:
            conn.execute(
                table.delete().where(
                    (table.c.key_name == key_name)
                    & (table.c.idempotency_key == key)
                    & (table.c.claim == token)
                    & (table.c.state == "in_progress")
                )
            )

        self._grouped.run(release)

    # --- screenings -------------------------------------------------------------

    def insert_screening(
        self,
        row: dict[str, Any],
        *,
        idempotency: tuple[str, str, str] | None = None,
        response: tuple[int, str] | None = None,
        deliveries: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Store a screening, its audit entry, its webhook deliveries (the outbox) and (if
        any) its idempotency outcome at once.

        ``idempotency`` is (key name, Idempotency-Key, claim token). Raises ``ClaimLost``,
        storing nothing, when another request took the claim over meanwhile.
        """

        # Parameters go beside fixed statements, not into them, so SQLAlchemy
        # compiles each statement once per process instead of once per request. The
        # events go in the same transaction (on PostgreSQL the same statement): never a
        # screening without its events, nor an event for a screening that was rolled back.
        def insert(conn: Connection) -> None:
            if self._one_statement:
                conn.execute(
                    _insert_screening_with_events(len(deliveries)),
                    _screening_with_events_parameters(row, deliveries),
                )
            else:
                self._insert_rows(conn, screenings, [row])
                self._audit(conn, row["created_by"], "create", [row["id"]], row["created_at"])
                if deliveries:
                    self._insert_rows(conn, webhook_deliveries, deliveries)
            if idempotency is not None and response is not None:
                finished = conn.execute(
                    _FINISH_IDEMPOTENCY,
                    {
                        "k_name": idempotency[0],
                        "k_key": idempotency[1],
                        "k_claim": idempotency[2],
                        "state": "done",
                        "status_code": response[0],
                        "response_body": response[1],
                        "screening_id": row["id"],
                    },
                ).rowcount
                if finished != 1:
                    # Raising rolls this screening back (its savepoint), nothing else.
                    raise ClaimLost(idempotency[1])

        self._grouped.run(insert)

    def get_screening(self, screening_id: str) -> dict[str, Any] | None:
        """One screening with its review history, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(screenings).where(screenings.c.id == screening_id)
            ).one_or_none()
            if row is None:
                return None
            history = conn.execute(
                sa.select(reviews.c.at, reviews.c.by, reviews.c.note)
                .where(reviews.c.screening_id == screening_id)
                .order_by(reviews.c.id)
            ).all()
        record = dict(row._mapping)
        record["reviews"] = [dict(r._mapping) for r in history]
        return record

    def replay_rows(
        self,
        questionnaire: tuple[str, str],
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 5000,
        ruleset_id: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any], str, str]]:
        """(id, answers, outcome, decided_by) of every screening of a questionnaire id and
        version (decided by ``ruleset_id`` when given), oldest first, read in keyset
        batches: memory stays one batch, whatever the table's size, and no transaction
        stays open between batches."""
        c = screenings.c
        # The position as the driver reads it, handed back to the database untouched: no
        # conversion to an aware datetime per row, only to compare it again.
        moment = sa.type_coerce(c.created_at, sa.types.NullType())
        query = sa.select(
            c.id,
            moment,
            # As JSON text, parsed by orjson below: the driver's JSON loading took longer.
            sa.cast(c.answers, sa.Text),
            c.outcome,
            c.result["decided_by"].as_string(),
        ).where(c.questionnaire_id == questionnaire[0], c.questionnaire_version == questionnaire[1])
        if since is not None:
            query = query.where(c.created_at >= since)
        if until is not None:
            query = query.where(c.created_at < until)
        if ruleset_id is not None:
            query = query.where(c.ruleset_id == ruleset_id)
        query = query.order_by(c.created_at, c.id).limit(batch)
        after: tuple[Any, str] | None = None
        loads = orjson.loads
        while True:
            page = query
            if after is not None:
                # A row value, not an OR of its parts: the databases then start each batch
                # at its place in the (created_at, id) index, not at the index's beginning.
                page = query.where(sa.tuple_(moment, c.id) > sa.tuple_(*after))
            with self.engine.connect() as conn:
                rows = conn.execute(page).all()
            for row in rows:
                yield row[0], loads(row[2]), row[3], row[4]
            if len(rows) < batch:
                return
            after = (rows[-1][1], rows[-1][0])

    def decided_by_ruleset(self, ruleset_id: str, version: str | None) -> bool:
        """Whether any stored screening was decided by this ruleset (and version)."""
        c = screenings.c
        query = sa.select(c.id).where(c.ruleset_id == ruleset_id)
        if version is not None:
            query = query.where(c.ruleset_version == version)
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def list_screenings(
        self,
        filters: ListFilters,
        limit: int,
        after: Position | None,
        triage: TriageOrder | None = None,
    ) -> tuple[list[dict[str, Any]], Position | None]:
        """A page of screenings, newest first (or in ``triage`` order), and the position
        after its last one."""
        c = screenings.c
        query = sa.select(
            c.id,
            c.created_at,
            c.created_by,
            c.patient_ref,
            c.language,
            c.questionnaire_id,
            c.questionnaire_version,
            c.ruleset_id,
            c.ruleset_version,
            c.ruleset_sha256,
            c.outcome,
            c.review_status,
            c.result["decided_by"].as_string().label("decided_by"),
            c.result["summary"]["clinician"]["card_summary"].as_string().label("card_summary"),
        )
        ranged = self.engine.dialect.name == "postgresql"
        if filters.outcome is not None:
            query = query.where(_fixed(c.outcome, filters.outcome, ranged))
        if filters.review_status is not None:
            query = query.where(_fixed(c.review_status, filters.review_status, ranged))
        if filters.patient_ref is not None:
            query = query.where(c.patient_ref == filters.patient_ref)
        if filters.created_from is not None:
            query = query.where(c.created_at >= filters.created_from)
        if filters.created_to is not None:
            query = query.where(c.created_at <= filters.created_to)
        if filters.ruleset_id is not None:
            query = query.where(_fixed(c.ruleset_id, filters.ruleset_id, ranged))
        if filters.ruleset_version is not None:
            query = query.where(_fixed(c.ruleset_version, filters.ruleset_version, ranged))
        if triage is not None:
            return self._triage_page(query, limit, after, triage, filters)
        if after is not None:
            # A row value, not an OR of its parts: the page starts at its place in the
            # (created_at, id) index instead of filtering the rows before it.
            query = query.where(_position_key() < _position_value(after[-2], after[-1]))
        leading = [column.desc() for column in _index_prefix(filters)]
        query = query.order_by(*leading, c.created_at.desc(), c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, (rows[-1]["created_at"], rows[-1]["id"])
        return rows, None

    def _triage_page(
        self,
        query: sa.Select[Any],
        limit: int,
        after: Position | None,
        triage: TriageOrder,
        filters: ListFilters,
    ) -> tuple[list[dict[str, Any]], Position | None]:
        """``query`` in triage order: band, then oldest first, then id (keyset paging).

        One query per band, each in the order of an index: pending screenings of the urgent
        outcomes ((review_status, outcome, created_at, id)), then those of the see-own-doctor
        outcomes, then the rest ((created_at, id), passing over the few pending ones of the
        first two bands). Each reads only the rows its page needs, so a page costs the same
        whatever the table's size; a CASE over the bands, which no index supplies, made the
        database read and sort every row for every page.
        """
        c = screenings.c
        pending = c.review_status == "pending"
        first = (*triage.urgent, *triage.see_doctor)
        # A band the filters leave empty is not asked for: it would cost a query (and, on
        # PostgreSQL, the planner's guess at a large one) to find nothing.
        bands: list[list[sa.ColumnElement[bool]] | None] = [
            [pending, c.outcome.in_(outcomes)] if _band_possible(outcomes, filters) else None
            for outcomes in (triage.urgent, triage.see_doctor)
        ]
        bands.append([sa.or_(~pending, c.outcome.not_in(first))] if first else [])
        start, moment, last_id = (0, None, None) if after is None else after  # type: ignore[misc]
        rows: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            for band in range(start, len(bands)):
                conditions = bands[band]
                if conditions is None:
                    continue
                page = query.add_columns(sa.literal(band).label("band")).where(*conditions)
                if after is not None and band == start:
                    page = page.where(_position_key() > _position_value(moment, last_id))
                band_outcomes = (triage.urgent, triage.see_doctor)[band] if band < 2 else ()
                one = filters.outcome or (band_outcomes[0] if len(band_outcomes) == 1 else None)
                if band < 2 and one is not None:
                    # The band fixes the review status, and here one outcome too.
                    leading = _index_prefix(replace(filters, review_status="pending", outcome=one))
                else:
                    leading = _index_prefix(filters)
                page = page.order_by(*leading, c.created_at, c.id).limit(limit + 1 - len(rows))
                rows += [dict(r._mapping) for r in conn.execute(page)]
                if len(rows) > limit:
                    break
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            return rows, (last["band"], last["created_at"], last["id"])
        return rows, None

    def add_review(
        self,
        screening_id: str,
        by: str,
        note: str | None,
        at: datetime | None = None,
        deliveries: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Record a review and its webhook deliveries (the outbox) at once; False, storing
        nothing, when there is no such screening."""
        now = at or _utcnow()

        def review(conn: Connection) -> bool:
            updated = conn.execute(
                screenings.update()
                .where(screenings.c.id == screening_id)
                .values(review_status="reviewed")
            ).rowcount
            if updated != 1:
                return False
            conn.execute(
                reviews.insert().values(screening_id=screening_id, at=now, by=by, note=note)
            )
            self._audit(conn, by, "review", [screening_id], now)
            if deliveries:
                self._insert_rows(conn, webhook_deliveries, deliveries)
            return True

        return self._grouped.run(review)

    def purge(self, before: datetime, actor: str) -> int:
        """Delete screenings created before ``before`` with their reviews, idempotency
        records, CDS cards and feedback; CDS cards and feedback from before ``before``
        whatever they describe; expired idempotency records and token ids. Audit each
        screening deleted."""
        with self._write() as conn:
            doomed = [
                row.id
                for row in conn.execute(
                    sa.select(screenings.c.id).where(screenings.c.created_at < before)
                )
            ]
            if doomed:
                # Explicit deletes, not only ON DELETE CASCADE: the same on any database.
                for table in (
                    reviews,
                    idempotency_records,
                    webhook_deliveries,
                    overdue_reviews,
                    cds_cards,
                    cds_feedback,
                ):
                    conn.execute(table.delete().where(table.c.screening_id.in_(doomed)))
                conn.execute(screenings.delete().where(screenings.c.id.in_(doomed)))
                self._audit(conn, actor, "purge", doomed, _utcnow())
            # Cards hold the EHR's patient id, feedback a clinician's comment: they go
            # at the same age as screenings, also when no stored screening matched.
            conn.execute(cds_cards.delete().where(cds_cards.c.shown_at < before))
            conn.execute(cds_feedback.delete().where(cds_feedback.c.received_at < before))
            now = _utcnow()
            conn.execute(
                idempotency_records.delete().where(idempotency_records.c.expires_at <= now)
            )
            conn.execute(cds_token_ids.delete().where(cds_token_ids.c.expires_at <= now))
        return len(doomed)

    # --- CDS Hooks ------------------------------------------------------------------

    def remember_token_id(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a token's ``jti`` until ``expires_at``; False when it was seen before.

        The primary key decides, so two workers (or instances) given the same token at
        once can't both accept it. Ids whose tokens have expired are deleted first.
        """
        now = _utcnow()
        table = cds_token_ids

        def remember(conn: Connection) -> bool:
            conn.execute(table.delete().where(table.c.expires_at <= now))
            inserted = conn.execute(
                self._insert(table)
                .values(issuer=issuer, jti=jti, expires_at=expires_at)
                .on_conflict_do_nothing()
                .returning(table.c.jti)
            ).first()
            return inserted is not None

        # Written on every hook call: committed with the other requests' writes.
        return self._grouped.run(remember)

    def screening_with_answers(self, digest: str) -> str | None:
        """The id of the newest screening whose answers have this digest, if any."""
        c = screenings.c
        query = (
            sa.select(c.id)
            .where(c.answers_sha256 == digest)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def record_card(self, row: dict[str, Any]) -> None:
        """Store a card as shown; audit it against its screening when it has one."""

        def record(conn: Connection) -> None:
            conn.execute(cds_cards.insert(), row)
            if row["screening_id"] is not None:
                self._audit(conn, row["caller"], "cds_card", [row["screening_id"]], row["shown_at"])

        self._grouped.run(record)

    def record_feedback(self, caller: str, entries: Sequence[dict[str, Any]]) -> int:
        """Store feedback entries (each joined to its card, if shown) and audit them;
        return how many named a card never shown."""
        now = _utcnow()
        uuids = {entry["card_uuid"] for entry in entries}

        def record(conn: Connection) -> list[dict[str, Any]]:
            shown = {
                row.uuid: row.screening_id
                for row in conn.execute(
                    sa.select(cds_cards.c.uuid, cds_cards.c.screening_id).where(
                        cds_cards.c.uuid.in_(uuids)
                    )
                )
            }
            rows = [
                {
                    **entry,
                    "received_at": now,
                    "caller": caller,
                    "known": entry["card_uuid"] in shown,
                    "screening_id": shown.get(entry["card_uuid"]),
                }
                for entry in entries
            ]
            conn.execute(cds_feedback.insert(), rows)
            self._audit(conn, caller, "cds_feedback", [row["screening_id"] for row in rows], now)
            return rows

        # Committed with the other requests' writes, like the cards it answers.
        rows = self._grouped.run(record)
        return sum(1 for row in rows if not row["known"])

    def card_feedback(self, screening_id: str) -> list[dict[str, Any]]:
        """The feedback on the cards that described a screening, oldest first."""
        query = (
            sa.select(cds_feedback)
            .where(cds_feedback.c.screening_id == screening_id)
            .order_by(cds_feedback.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # --- review sessions ------------------------------------------------------------

    def start_session(
        self, token_hash: str, key_name: str, key_check: str, lifetime: timedelta, idle: timedelta
    ) -> None:
        """Store a new sign-in session that ends ``lifetime`` from now at the latest.

        Sessions that have ended by time (past their end, or unused for ``idle``) are
        deleted here too, so the table holds only live sessions and a few stale ones.
        """
        now = _utcnow()
        table = review_sessions
        with self._write() as conn:
            conn.execute(
                table.delete().where(
                    (table.c.expires_at <= now) | (table.c.last_seen_at <= now - idle)
                )
            )
            conn.execute(
                table.insert().values(
                    token_hash=token_hash,
                    key_name=key_name,
                    key_check=key_check,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + lifetime,
                )
            )

    def resume_session(self, token_hash: str, idle: timedelta) -> tuple[str, str] | None:
        """Mark a live session as used now; return its key name and check, or None.

        A session is live until its absolute end and while it was used within ``idle``.
        One statement both checks and renews it, so two requests can't race past an end.
        """
        now = _utcnow()
        table = review_sessions
        with self._write() as conn:
            row = conn.execute(
                table.update()
                .where(
                    (table.c.token_hash == token_hash)
                    & (table.c.expires_at > now)
                    & (table.c.last_seen_at > now - idle)
                )
                .values(last_seen_at=now)
                .returning(table.c.key_name, table.c.key_check)
            ).first()
        return None if row is None else (row.key_name, row.key_check)

    def end_session(self, token_hash: str) -> None:
        """Forget a session (signing out, or a key that no longer matches)."""
        with self._write() as conn:
            conn.execute(review_sessions.delete().where(review_sessions.c.token_hash == token_hash))

    # --- audit --------------------------------------------------------------------

    def audit(self, actor: str, action: str, screening_ids: Sequence[str]) -> None:
        """Record that ``actor`` did ``action`` to each screening (ids and names only)."""

        def record(conn: Connection) -> None:
            self._audit(conn, actor, action, screening_ids, _utcnow())

        self._grouped.run(record)

    def _audit(
        self,
        conn: Connection,
        actor: str,
        action: str,
        screening_ids: Sequence[str | None],
        at: datetime,
    ) -> None:
        self._insert_rows(
            conn,
            audit_log,
            [{"at": at, "actor": actor, "action": action, "screening_id": i} for i in screening_ids]
            or [{"at": at, "actor": actor, "action": action, "screening_id": None}],
        )

    def _insert_rows(
        self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Insert ``rows`` into ``table``: through the driver where compiled for it."""
        driver = self._driver_inserts.get(table.name)
        if driver is not None:
            driver.run(conn, rows)
        else:
            conn.execute(table.insert(), list(rows))

    def audit_entries(self, screening_id: str | None = None) -> list[dict[str, Any]]:
        """The audit trail, oldest first (optionally for one screening)."""
        query = sa.select(audit_log).order_by(audit_log.c.id)
        if screening_id is not None:
            query = query.where(audit_log.c.screening_id == screening_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
