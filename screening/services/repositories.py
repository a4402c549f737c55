"""What the screening use cases need of storage, as the services see it.

``screening.storage.store.Store`` satisfies these (its repositories are the database
ones); a test may hand ``ScreeningService`` an in-memory one where a database adds
nothing (``tests/support/memory.py``). Screenings are ``screening.records`` types.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from screening.records import ListRow
from screening.records import NewDelivery
from screening.records import Screening
from screening.rules.questionnaire import Answers
from screening.storage.idempotency import Claim
from screening.storage.lists import ListFilters
from screening.storage.lists import Position
from screening.storage.lists import TriageOrder


class ScreeningRecords(Protocol):
    """Stored screenings, with what goes with each (audit entry, outbox rows, reviews)."""

    def insert(
        self,
        screening: Screening,
        *,
        idempotency: tuple[str, str, str] | None = None,
        response: tuple[int, str] | None = None,
        deliveries: Sequence[NewDelivery] = (),
        actor: str | None = None,
    ) -> None:
        """Store a screening and finish its Idempotency-Key claim (``ClaimLost`` if lost)."""

    def get(self, screening_id: str) -> Screening | None:
        """One screening with its review history (``reviews``), or None."""

    def page(
        self,
        filters: ListFilters,
        limit: int,
        after: Position | None,
        triage: TriageOrder | None = None,
    ) -> tuple[list[ListRow], Position | None]:
        """A page of list rows, newest first or in triage order, and where it ended."""

    def replay_rows(
        self,
        questionnaire: tuple[str, str],
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 5000,
        ruleset_id: str | None = None,
    ) -> Iterator[tuple[str, Answers, str, str]]:
        """(id, answers, outcome, decided_by) of a questionnaire version's screenings."""

    def decided_by_ruleset(self, ruleset_id: str, version: str | None) -> bool:
        """Whether any stored screening was decided by this ruleset (and version)."""

    def add_review(
        self,
        screening_id: str,
        by: str,
        note: str | None,
        at: datetime | None = None,
        deliveries: Sequence[NewDelivery] = (),
        by_id: str | None = None,
    ) -> bool:
        """Record a review; False when there is no such screening."""

    def purge(self, before: datetime, actor: str) -> int:
        """Delete screenings created before ``before``; return how many."""


class IdempotencyRecords(Protocol):
    """Claims of Idempotency-Keys."""

    def claim(self, key_name: str, key: str, request_hash: str) -> Claim:
        """Claim ``key`` for a request, or say what the first request with it did."""

    def release(self, key_name: str, key: str, token: str) -> None:
        """Forget a failed request's claim, so that a retry runs afresh."""


class AuditTrail(Protocol):
    """Who did what to which screening."""

    def record(
        self, actor: str, action: str, screening_ids: Sequence[str], sid: str | None = None
    ) -> None:
        """Record ``action`` by ``actor`` on each screening (with the provider's ``sid``)."""


class ScreeningStore(Protocol):
    """Everything ``ScreeningService`` stores and reads through."""

    @property
    def screenings(self) -> ScreeningRecords: ...

    @property
    def idempotency(self) -> IdempotencyRecords: ...

    @property
    def audit(self) -> AuditTrail: ...

    def ping(self) -> None:
        """Raise unless the database answers."""

    def upgrade(self, revision: str = "head") -> None:
        """Apply the schema migrations up to ``revision``."""
