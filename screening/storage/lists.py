"""The clinician list's filters, its two orders and where a page ended, and the conditions
and index prefixes that let each page read only its own rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from screening.storage.tables import screenings


@dataclass(frozen=True, slots=True)
class TriageOrder:
    """Triage order's bands: pending ``urgent`` first, then pending ``see_doctor``, then
    the rest, oldest first within each."""

    urgent: tuple[str, ...]
    see_doctor: tuple[str, ...]


#: Where a list page ended: (created_at, id) newest first, (band, created_at, id) in triage.
Position = tuple[datetime, str] | tuple[int, datetime, str]


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


def fixed(column: sa.Column[Any], value: str, ranged: bool) -> sa.ColumnElement[bool]:
    """``column`` equal to ``value``; ``ranged``: written as the one-value range it is.

    PostgreSQL drops a column compared with ``=`` from the ORDER BY as constant; as a range
    it keeps it there, where ``_index_prefix`` puts it to name the index a page reads.
    SQLite needs the ``=``: it reads a range as a range, and then sorts the page's rows.
    """
    return column.between(value, value) if ranged else column == value


def index_prefix(filters: ListFilters) -> list[sa.Column[Any]]:
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


def band_possible(outcomes: Sequence[str], filters: ListFilters) -> bool:
    """Whether a triage band of pending screenings with ``outcomes`` can hold a row the
    filters let through."""
    if not outcomes or filters.review_status not in (None, "pending"):
        return False
    return filters.outcome is None or filters.outcome in outcomes


def position_key() -> sa.Tuple:
    """A screening's place in list order, as a row value: (created_at, id)."""
    return sa.tuple_(screenings.c.created_at, screenings.c.id)


def position_value(created_at: Any, screening_id: Any) -> sa.Tuple:
    """A list position to compare ``position_key()`` with, bound as the columns' types."""
    return sa.tuple_(
        sa.bindparam(None, created_at, type_=screenings.c.created_at.type),
        sa.bindparam(None, screening_id, type_=screenings.c.id.type),
    )
