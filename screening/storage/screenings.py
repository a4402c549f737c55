"""Screenings: stored with their audit entry and outbox rows, read, listed (newest first or
in triage order, each page read from an index), reviewed, replayed and purged."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from screening.records import ListRow
from screening.records import NewDelivery
from screening.records import Screening
from screening.rules.questionnaire import Answers
from screening.storage.audit import write_audit
from screening.storage.database import AnyRow
from screening.storage.idempotency import FINISH_IDEMPOTENCY
from screening.storage.idempotency import ClaimLost
from screening.storage.lists import ListFilters
from screening.storage.lists import Position
from screening.storage.lists import TriageOrder
from screening.storage.lists import band_possible
from screening.storage.lists import fixed
from screening.storage.lists import index_prefix
from screening.storage.lists import position_key
from screening.storage.lists import position_value
from screening.storage.rows import list_row
from screening.storage.rows import screening_from
from screening.storage.rows import screening_row
from screening.storage.tables import audit_log
from screening.storage.tables import cds_cards
from screening.storage.tables import cds_feedback
from screening.storage.tables import cds_token_ids
from screening.storage.tables import idempotency_records
from screening.storage.tables import overdue_reviews
from screening.storage.tables import reviews
from screening.storage.tables import screenings
from screening.storage.tables import webhook_deliveries

if TYPE_CHECKING:
    # The store holds this repository; no import at run time.
    from screening.storage.store import Store

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
        .returning(c.id, c.created_at)
        .cte("stored")
    )
    audit = audit_log.insert().from_select(
        ["at", "actor", "action", "screening_id"],
        sa.select(
            stored.c.created_at,
            sa.bindparam("a_actor", type_=audit_log.c.actor.type),
            sa.literal("create"),
            stored.c.id,
        ),
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
    row: dict[str, object], deliveries: Sequence[NewDelivery]
) -> dict[str, object]:
    """The parameters of ``_insert_screening_with_events(len(deliveries))``."""
    parameters = {f"s_{col.name}": row.get(col.name) for col in screenings.c}
    for n, delivery in enumerate(deliveries):
        parameters.update({f"d{n}_{col.name}": delivery.get(col.name) for col in _DELIVERY_COLUMNS})
    return parameters


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ScreeningRepository:
    """The screenings table and what goes with each row."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(
        self,
        screening: Screening,
        *,
        idempotency: tuple[str, str, str] | None = None,
        response: tuple[int, str] | None = None,
        deliveries: Sequence[NewDelivery] = (),
        actor: str | None = None,
    ) -> None:
        """Store a screening, its audit entry, its webhook deliveries (the outbox) and (if
        any) its idempotency outcome at once.

        ``idempotency`` is (key name, Idempotency-Key, claim token). Raises ``ClaimLost``,
        storing nothing, when another request took the claim over meanwhile.
        """
        row = screening_row(screening)

        # Parameters go beside fixed statements, not into them, so SQLAlchemy
        # compiles each statement once per process instead of once per request. The
        # events go in the same transaction (on PostgreSQL the same statement): never a
        # screening without its events, nor an event for a screening that was rolled back.
        def insert(conn: Connection) -> None:
            if self.store.one_statement:
                conn.execute(
                    _insert_screening_with_events(len(deliveries)),
                    {
                        **_screening_with_events_parameters(row, deliveries),
                        "a_actor": actor or screening.created_by,
                    },
                )
            else:
                self.store.insert_rows(conn, screenings, [row])
                write_audit(
                    self.store,
                    conn,
                    actor or screening.created_by,
                    "create",
                    [screening.id],
                    screening.created_at,
                )
                if deliveries:
                    self.store.insert_rows(conn, webhook_deliveries, deliveries)
            if idempotency is not None and response is not None:
                finished = conn.execute(
                    FINISH_IDEMPOTENCY,
                    {
                        "k_name": idempotency[0],
                        "k_key": idempotency[1],
                        "k_claim": idempotency[2],
                        "state": "done",
                        "status_code": response[0],
                        "response_body": response[1],
                        "screening_id": screening.id,
                    },
                ).rowcount
                if finished != 1:
                    # Raising rolls this screening back (its savepoint), nothing else.
                    raise ClaimLost(idempotency[1])

        self.store.grouped.run(insert)

    def get(self, screening_id: str) -> Screening | None:
        """One screening with its review history, or None."""
        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(screenings).where(screenings.c.id == screening_id)
            ).one_or_none()
            if row is None:
                return None
            history = conn.execute(
                sa.select(reviews.c.at, reviews.c.by, reviews.c.note, reviews.c.by_id)
                .where(reviews.c.screening_id == screening_id)
                .order_by(reviews.c.id)
            ).all()
        return screening_from(row, history)

    def replay_rows(
        self,
        questionnaire: tuple[str, str],
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 5000,
        ruleset_id: str | None = None,
    ) -> Iterator[tuple[str, Answers, str, str]]:
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
            with self.store.engine.connect() as conn:
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
        with self.store.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def page(
        self,
        filters: ListFilters,
        limit: int,
        after: Position | None,
        triage: TriageOrder | None = None,
    ) -> tuple[list[ListRow], Position | None]:
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
        ranged = self.store.engine.dialect.name == "postgresql"
        if filters.outcome is not None:
            query = query.where(fixed(c.outcome, filters.outcome, ranged))
        if filters.review_status is not None:
            query = query.where(fixed(c.review_status, filters.review_status, ranged))
        if filters.patient_ref is not None:
            query = query.where(c.patient_ref == filters.patient_ref)
        if filters.created_from is not None:
            query = query.where(c.created_at >= filters.created_from)
        if filters.created_to is not None:
            query = query.where(c.created_at <= filters.created_to)
        if filters.ruleset_id is not None:
            query = query.where(fixed(c.ruleset_id, filters.ruleset_id, ranged))
        if filters.ruleset_version is not None:
            query = query.where(fixed(c.ruleset_version, filters.ruleset_version, ranged))
        if triage is not None:
            return self._triage_page(query, limit, after, triage, filters)
        if after is not None:
            # A row value, not an OR of its parts: the page starts at its place in the
            # (created_at, id) index instead of filtering the rows before it.
            query = query.where(position_key() < position_value(after[-2], after[-1]))
        leading = [column.desc() for column in index_prefix(filters)]
        query = query.order_by(*leading, c.created_at.desc(), c.id.desc()).limit(limit + 1)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        if len(rows) > limit:
            last = rows[limit - 1]
            return [list_row(row) for row in rows[:limit]], (last.created_at, last.id)
        return [list_row(row) for row in rows], None

    def _triage_page(
        self,
        query: sa.Select[Any],
        limit: int,
        after: Position | None,
        triage: TriageOrder,
        filters: ListFilters,
    ) -> tuple[list[ListRow], Position | None]:
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
            [pending, c.outcome.in_(outcomes)] if band_possible(outcomes, filters) else None
            for outcomes in (triage.urgent, triage.see_doctor)
        ]
        bands.append([sa.or_(~pending, c.outcome.not_in(first))] if first else [])
        start, moment, last_id = (0, None, None) if after is None else after  # type: ignore[misc]
        rows: list[AnyRow] = []
        with self.store.engine.connect() as conn:
            for band in range(start, len(bands)):
                conditions = bands[band]
                if conditions is None:
                    continue
                page = query.add_columns(sa.literal(band).label("band")).where(*conditions)
                if after is not None and band == start:
                    page = page.where(position_key() > position_value(moment, last_id))
                band_outcomes = (triage.urgent, triage.see_doctor)[band] if band < 2 else ()
                one = filters.outcome or (band_outcomes[0] if len(band_outcomes) == 1 else None)
                if band < 2 and one is not None:
                    # The band fixes the review status, and here one outcome too.
                    leading = index_prefix(replace(filters, review_status="pending", outcome=one))
                else:
                    leading = index_prefix(filters)
                page = page.order_by(*leading, c.created_at, c.id).limit(limit + 1 - len(rows))
                rows += conn.execute(page).all()
                if len(rows) > limit:
                    break
        if len(rows) > limit:
            last = rows[limit - 1]
            return [list_row(row) for row in rows[:limit]], (last.band, last.created_at, last.id)
        return [list_row(row) for row in rows], None

    def add_review(
        self,
        screening_id: str,
        by: str,
        note: str | None,
        at: datetime | None = None,
        deliveries: Sequence[NewDelivery] = (),
        by_id: str | None = None,
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
                reviews.insert().values(
                    screening_id=screening_id, at=now, by=by, note=note, by_id=by_id
                )
            )
            write_audit(self.store, conn, by_id or by, "review", [screening_id], now)
            if deliveries:
                self.store.insert_rows(conn, webhook_deliveries, deliveries)
            return True

        return self.store.grouped.run(review)

    def purge(self, before: datetime, actor: str) -> int:
        """Delete screenings created before ``before`` with their reviews, idempotency
        records, CDS cards and feedback; CDS cards and feedback from before ``before``
        whatever they describe; expired idempotency records and token ids. Audit each
        screening deleted."""
        with self.store.transaction() as conn:
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
                write_audit(self.store, conn, actor, "purge", doomed, _utcnow())
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

    def with_answers(self, digest: str) -> str | None:
        """The id of the newest screening whose answers have this digest, if any."""
        c = screenings.c
        query = (
            sa.select(c.id)
            .where(c.answers_sha256 == digest)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(1)
        )
        with self.store.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()
