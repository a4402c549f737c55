"""The webhook outbox's queries: claims with leases, results, listing, manual retries and
noticing overdue reviews.

Rows are written by the store's own write transactions (a screening with its
``screening.created`` deliveries, a review with its ``screening.reviewed`` ones); this
module is what delivery workers do with them. A worker claims due rows by moving their
``next_attempt_at`` to the end of a lease and writing its own token into ``lease``; only
the holder of the token may record a result. On PostgreSQL the claim skips rows another
worker has locked (``FOR UPDATE SKIP LOCKED``); SQLite lets one writer in at a time, so
claims there are serialised by its write lock. A worker that dies leaves its rows claimed
until the lease ends; then any worker may claim them again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from screening.records import AttemptOutcome
from screening.records import DeliveryState
from screening.records import EventFacts
from screening.records import NewDelivery
from screening.records import RulesetRef
from screening.storage.database import AnyRow
from screening.storage.store import Store
from screening.storage.tables import overdue_progress
from screening.storage.tables import overdue_reviews
from screening.storage.tables import screenings
from screening.storage.tables import webhook_deliveries

_d = webhook_deliveries.c


def _event_facts(row: AnyRow) -> EventFacts:
    """A row of the overdue scan's query as what its event says."""
    return EventFacts(
        id=row.id,
        created_at=row.created_at,
        created_by=row.created_by,
        patient_ref=row.patient_ref,
        outcome=row.outcome,
        decided_by=row.decided_by,
        ruleset=RulesetRef(row.ruleset_id, row.ruleset_version, row.ruleset_sha256),
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds until ``lease_until``."""

    id: int
    event_id: str
    event_type: str
    endpoint: str
    payload: str
    attempts: int
    scheduled_at: datetime


#: How many overdue screenings one scan marks at most.
OVERDUE_BATCH = 100


class Outbox:
    """The delivery workers' side of the ``webhook_deliveries`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._skip_locked = store.engine.dialect.name == "postgresql"

    def has_due(self, endpoints: Collection[str], now: datetime) -> bool:
        """Whether any delivery to ``endpoints`` is due: a read, so idle polling takes no lock."""
        query = (
            sa.select(_d.id)
            .where(_d.status == "pending", _d.next_attempt_at <= now, _d.endpoint.in_(endpoints))
            .limit(1)
        )
        with self.store.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def claim(
        self,
        endpoints: Collection[str],
        now: datetime,
        lease_until: datetime,
        token: str,
        limit: int,
    ) -> list[Claimed]:
        """Claim up to ``limit`` due deliveries, oldest due first, counting an attempt each."""
        due = (
            sa.select(_d.id)
            .where(_d.status == "pending", _d.next_attempt_at <= now, _d.endpoint.in_(endpoints))
            .order_by(_d.next_attempt_at, _d.id)
            .limit(limit)
        )
        if self._skip_locked:
            # Rows another worker is claiming right now are passed over, not waited for.
            due = due.with_for_update(skip_locked=True)
        statement = (
            webhook_deliveries.update()
            .where(_d.id.in_(due.scalar_subquery()))
            .values(
                lease=token,
                next_attempt_at=lease_until,
                attempts=_d.attempts + 1,
                last_attempt_at=now,
            )
            .returning(
                _d.id,
                _d.event_id,
                _d.event_type,
                _d.endpoint,
                _d.payload,
                _d.attempts,
                _d.scheduled_at,
            )
        )
        with self.store.transaction() as conn:
            rows = conn.execute(statement).all()
        claimed = [Claimed(**row._mapping) for row in rows]
        return sorted(claimed, key=lambda c: c.id)

    def record(self, delivery_id: int, token: str, values: AttemptOutcome) -> bool:
        """Record an attempt's result, if ``token`` still holds the claim; always frees it."""
        statement = (
            webhook_deliveries.update()
            .where(_d.id == delivery_id, _d.lease == token)
            .values(lease=None, **values)
        )
        with self.store.transaction() as conn:
            return bool(conn.execute(statement).rowcount == 1)

    def release(self, delivery_ids: Sequence[int], token: str, now: datetime) -> None:
        """Give back claimed deliveries that were not attempted (a stopping worker)."""
        if not delivery_ids:
            return
        statement = (
            webhook_deliveries.update()
            .where(_d.id.in_(delivery_ids), _d.lease == token)
            .values(lease=None, next_attempt_at=now, attempts=_d.attempts - 1)
        )
        with self.store.transaction() as conn:
            conn.execute(statement)

    def notice_overdue(
        self,
        outcomes: Collection[str],
        cutoff: datetime,
        now: datetime,
        deliveries: Callable[[EventFacts], list[NewDelivery]],
        limit: int = OVERDUE_BATCH,
        since: datetime | None = None,
    ) -> int:
        """Mark pending screenings with ``outcomes`` created at or before ``cutoff`` (and
        after ``since``, when given) overdue, once each, writing ``deliveries(screening)``
        in the same transaction; return how many (at most ``limit``).

        Once holds with any number of workers: a screening is marked by inserting its id
        into ``overdue_reviews``, whose primary key admits it once.
        """
        if not outcomes:
            return 0
        s = screenings.c
        candidates = (
            sa.select(
                s.id,
                s.created_at,
                s.outcome,
                s.result["decided_by"].as_string().label("decided_by"),
                s.patient_ref,
                s.created_by,
                s.ruleset_id,
                s.ruleset_version,
                s.ruleset_sha256,
            )
            .where(
                s.outcome.in_(outcomes),
                s.review_status == "pending",
                s.created_at <= cutoff,
                s.created_at > since if since is not None else sa.true(),
                ~sa.exists().where(overdue_reviews.c.screening_id == s.id),
            )
            .order_by(s.created_at)
            .limit(limit)
        )
        if self._skip_locked:
            # Hold the screenings: a review waits until this transaction ends, and another
            # worker's scan passes them over instead of waiting.
            candidates = candidates.with_for_update(of=screenings, skip_locked=True)
        noticed = 0
        with self.store.transaction() as conn:
            rows: list[NewDelivery] = []
            for screening in conn.execute(candidates).all():
                marked = conn.execute(
                    self.store.insert_statement(overdue_reviews)
                    .values(screening_id=screening.id, noticed_at=now)
                    .on_conflict_do_nothing()
                    .returning(overdue_reviews.c.screening_id)
                ).first()
                if marked is not None:
                    noticed += 1
                    rows.extend(deliveries(_event_facts(screening)))
            if rows:
                conn.execute(webhook_deliveries.insert(), rows)
        return noticed

    def overdue_covered(self, outcomes: Collection[str]) -> datetime | None:
        """How far the scans for ``outcomes`` have got: every such screening created at or
        before it was looked at by a complete scan of some worker. None before the first."""
        query = sa.select(overdue_progress.c.covered_until).where(
            overdue_progress.c.outcomes == _outcomes_key(outcomes)
        )
        with self.store.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def record_overdue_covered(self, outcomes: Collection[str], until: datetime) -> None:
        """Record that a complete scan for ``outcomes`` looked at everything created up to
        ``until``; a later time another worker recorded is kept."""
        insert = self.store.insert_statement(overdue_progress).values(
            outcomes=_outcomes_key(outcomes), covered_until=until
        )
        statement = insert.on_conflict_do_update(
            index_elements=[overdue_progress.c.outcomes],
            set_={"covered_until": insert.excluded.covered_until},
            where=overdue_progress.c.covered_until < insert.excluded.covered_until,
        )
        with self.store.transaction() as conn:
            conn.execute(statement)

    def count_overdue(self, outcomes: Collection[str], cutoff: datetime) -> int:
        """Pending screenings with ``outcomes`` created at or before ``cutoff``."""
        if not outcomes:
            return 0
        s = screenings.c
        query = sa.select(sa.func.count()).where(
            s.outcome.in_(outcomes), s.review_status == "pending", s.created_at <= cutoff
        )
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def queue_stats(self) -> tuple[datetime | None, int]:
        """The creation time of the oldest pending delivery, and how many deliveries failed."""
        oldest = sa.select(sa.func.min(_d.created_at)).where(_d.status == "pending")
        failed = sa.select(sa.func.count()).where(_d.status == "failed")
        with self.store.engine.connect() as conn:
            first = conn.execute(oldest).scalar_one()
            count = conn.execute(failed).scalar_one()
        return first, int(count)

    def list(self, *, failed_only: bool, limit: int) -> list[DeliveryState]:
        """Deliveries newest first (only failed ones with ``failed_only``), without payloads."""
        query = sa.select(
            _d.id,
            _d.event_id,
            _d.event_type,
            _d.endpoint,
            _d.screening_id,
            _d.status,
            _d.attempts,
            _d.created_at,
            _d.next_attempt_at,
            _d.last_attempt_at,
            _d.last_result,
            _d.delivered_at,
        )
        if failed_only:
            query = query.where(_d.status == "failed")
        query = query.order_by(_d.id.desc()).limit(limit)
        with self.store.engine.connect() as conn:
            return [DeliveryState(**row._mapping) for row in conn.execute(query)]

    def retry(self, delivery_id: int, now: datetime) -> Literal["retried", "missing", "not_failed"]:
        """Put a failed delivery back on a fresh retry schedule, due now."""
        with self.store.transaction() as conn:
            status = conn.execute(
                sa.select(_d.status).where(_d.id == delivery_id)
            ).scalar_one_or_none()
            if status is None:
                return "missing"
            if status != "failed":
                return "not_failed"
            conn.execute(
                webhook_deliveries.update()
                .where(_d.id == delivery_id)
                .values(
                    status="pending",
                    attempts=0,
                    scheduled_at=now,
                    next_attempt_at=now,
                    lease=None,
                )
            )
        return "retried"


def _outcomes_key(outcomes: Collection[str]) -> str:
    """One key for a set of outcome codes, whatever their number and length."""
    return hashlib.sha256(",".join(sorted(outcomes)).encode()).hexdigest()
