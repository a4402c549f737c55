"""An in-memory ``ScreeningStore`` for testing the services' own rules where a database
adds nothing: idempotency, portal isolation, reviews. Claims follow the database's
(a key is claimed once; a finished claim replays; the first body decides), lists are
newest first; nothing here is shared between threads."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import UTC
from datetime import datetime

from screening.records import ListRow
from screening.records import NewDelivery
from screening.records import Review
from screening.records import Screening
from screening.rules.questionnaire import Answers
from screening.storage.idempotency import Claim
from screening.storage.idempotency import ClaimLost
from screening.storage.lists import ListFilters
from screening.storage.lists import Position
from screening.storage.lists import TriageOrder


@dataclass
class MemoryAudit:
    entries: list[tuple[str, str, str | None]] = field(default_factory=list)

    def record(
        self, actor: str, action: str, screening_ids: Sequence[str], sid: str | None = None
    ) -> None:
        ids: Sequence[str | None] = screening_ids or [None]
        self.entries.extend((actor, action, screening_id) for screening_id in ids)


@dataclass
class _Claimed:
    request_hash: str
    token: str
    done: bool = False
    response: tuple[int, str] | None = None
    screening_id: str | None = None


@dataclass
class MemoryIdempotency:
    claims: dict[tuple[str, str], _Claimed] = field(default_factory=dict)

    def claim(self, key_name: str, key: str, request_hash: str) -> Claim:
        held = self.claims.get((key_name, key))
        if held is None:
            token = secrets.token_hex(16)
            self.claims[(key_name, key)] = _Claimed(request_hash, token)
            return Claim("new", token=token)
        if held.request_hash != request_hash:
            return Claim("mismatch")
        if held.done and held.response is not None:
            return Claim("replay", held.response[0], held.response[1], held.screening_id)
        return Claim("in_flight")

    def release(self, key_name: str, key: str, token: str) -> None:
        held = self.claims.get((key_name, key))
        if held is not None and held.token == token and not held.done:
            del self.claims[(key_name, key)]


def _list_row(screening: Screening) -> ListRow:
    return ListRow(
        id=screening.id,
        created_at=screening.created_at,
        created_by=screening.created_by,
        patient_ref=screening.patient_ref,
        language=screening.language,
        questionnaire=screening.questionnaire,
        ruleset=screening.ruleset,
        outcome=screening.outcome,
        review_status=screening.review_status,
        decided_by=screening.decided_by,
        card_summary=screening.result.clinician["card_summary"],
    )


@dataclass
class MemoryScreenings:
    audit: MemoryAudit
    idempotency: MemoryIdempotency
    rows: dict[str, Screening] = field(default_factory=dict)
    reviews: dict[str, list[Review]] = field(default_factory=dict)
    deliveries: list[NewDelivery] = field(default_factory=list)

    def insert(
        self,
        screening: Screening,
        *,
        idempotency: tuple[str, str, str] | None = None,
        response: tuple[int, str] | None = None,
        deliveries: Sequence[NewDelivery] = (),
        actor: str | None = None,
    ) -> None:
        if idempotency is not None:
            held = self.idempotency.claims.get(idempotency[:2])
            if held is None or held.token != idempotency[2] or held.done:
                raise ClaimLost(idempotency[1])
            held.done, held.response, held.screening_id = True, response, screening.id
        self.rows[screening.id] = screening
        self.audit.record(actor or screening.created_by, "create", [screening.id])
        self.deliveries.extend(deliveries)

    def get(self, screening_id: str) -> Screening | None:
        row = self.rows.get(screening_id)
        if row is None:
            return None
        return replace(row, reviews=tuple(self.reviews.get(screening_id, [])))

    def page(
        self,
        filters: ListFilters,
        limit: int,
        after: Position | None,
        triage: TriageOrder | None = None,
    ) -> tuple[list[ListRow], Position | None]:
        assert triage is None and after is None, "newest first, one page, here"
        rows = [
            row
            for row in self.rows.values()
            if (filters.outcome is None or row.outcome == filters.outcome)
            and (filters.review_status is None or row.review_status == filters.review_status)
            and (filters.patient_ref is None or row.patient_ref == filters.patient_ref)
        ]
        rows.sort(key=lambda row: (row.created_at, row.id), reverse=True)
        page = [_list_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return page, (page[-1].created_at, page[-1].id) if more else None

    def replay_rows(
        self,
        questionnaire: tuple[str, str],
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 5000,
        ruleset_id: str | None = None,
    ) -> Iterator[tuple[str, Answers, str, str]]:
        for row in sorted(self.rows.values(), key=lambda r: (r.created_at, r.id)):
            if (row.questionnaire.id, row.questionnaire.version) == questionnaire:
                yield row.id, dict(row.answers), row.outcome, row.decided_by

    def decided_by_ruleset(self, ruleset_id: str, version: str | None) -> bool:
        return any(
            row.ruleset.id == ruleset_id and version in (None, row.ruleset.version)
            for row in self.rows.values()
        )

    def add_review(
        self,
        screening_id: str,
        by: str,
        note: str | None,
        at: datetime | None = None,
        deliveries: Sequence[NewDelivery] = (),
        by_id: str | None = None,
    ) -> bool:
        row = self.rows.get(screening_id)
        if row is None:
            return False
        self.rows[screening_id] = replace(row, review_status="reviewed")
        self.reviews.setdefault(screening_id, []).append(
            Review(at or datetime.now(UTC), by, note, by_id)
        )
        self.audit.record(by_id or by, "review", [screening_id])
        self.deliveries.extend(deliveries)
        return True

    def purge(self, before: datetime, actor: str) -> int:
        doomed = [i for i, row in self.rows.items() if row.created_at < before]
        for screening_id in doomed:
            del self.rows[screening_id]
            self.reviews.pop(screening_id, None)
        self.audit.record(actor, "purge", doomed)
        return len(doomed)


class MemoryStore:
    """What ``ScreeningService`` needs, held in dicts."""

    def __init__(self) -> None:
        self.audit = MemoryAudit()
        self.idempotency = MemoryIdempotency()
        self.screenings = MemoryScreenings(self.audit, self.idempotency)

    def ping(self) -> None:
        return None

    def upgrade(self, revision: str = "head") -> None:
        return None
