"""The review worklist: which screenings come first, and when an urgent review is overdue.

Which outcomes are urgent and which mean "see your own doctor first" comes from the
rules data (an outcome's ``indicator``: ``critical`` and ``warning``), not from code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import TypeVar

from screening.records import ListRow
from screening.records import Screening
from screening.rules.ruleset import Outcome
from screening.storage.lists import TriageOrder

#: A screening or list row, which the clock gives its review times.
Timed = TypeVar("Timed", Screening, ListRow)

#: How long an urgent screening may wait for its review by default (notifications-v1.md).
DEFAULT_URGENT_REVIEW_MINUTES = 60
#: The longest wait accepted: a week. Longer would make "urgent" meaningless.
MAX_URGENT_REVIEW_MINUTES = 7 * 24 * 60


class TriageConfigError(ValueError):
    """``SCREENING_URGENT_REVIEW_MINUTES`` can't be used."""


def parse_review_minutes(value: Any) -> int:
    """The configured minutes (a whole number from 1 to a week), or the default when unset."""
    if value is None or value == "":
        return DEFAULT_URGENT_REVIEW_MINUTES
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or not 1 <= value <= MAX_URGENT_REVIEW_MINUTES:
        raise TriageConfigError(
            "SCREENING_URGENT_REVIEW_MINUTES: must be a whole number of minutes from 1 to "
            f"{MAX_URGENT_REVIEW_MINUTES}"
        )
    return value


@dataclass(frozen=True, slots=True)
class ReviewClock:
    """When urgent screenings are due for review, and the triage bands."""

    urgent: tuple[str, ...]
    see_doctor: tuple[str, ...]
    review_within: timedelta

    @classmethod
    def for_outcomes(cls, outcomes: Mapping[str, Outcome], minutes: int) -> ReviewClock:
        """The bands the outcomes' indicators give (every package's outcomes: a stored
        screening may come from any), with ``minutes`` to review."""
        return cls(
            urgent=tuple(code for code, o in outcomes.items() if o.indicator == "critical"),
            see_doctor=tuple(code for code, o in outcomes.items() if o.indicator == "warning"),
            review_within=timedelta(minutes=minutes),
        )

    @property
    def order(self) -> TriageOrder:
        """The store's triage order."""
        return TriageOrder(urgent=self.urgent, see_doctor=self.see_doctor)

    def due_at(self, screening: Screening | ListRow) -> datetime | None:
        """When an urgent screening's review is due; None for any other outcome."""
        if screening.outcome not in self.urgent:
            return None
        return screening.created_at + self.review_within

    def overdue(self, screening: Screening | ListRow, now: datetime) -> bool:
        """Whether an urgent screening is still pending after its due time."""
        due = self.due_at(screening)
        return due is not None and screening.review_status == "pending" and now >= due

    def cutoff(self, now: datetime) -> datetime:
        """Urgent screenings created at or before this moment are due by ``now``."""
        return now - self.review_within

    def with_review_times(self, screening: Timed, now: datetime) -> Timed:
        """``screening`` with its ``review_due_at`` and ``review_overdue``."""
        return replace(
            screening,
            review_due_at=self.due_at(screening),
            review_overdue=self.overdue(screening, now),
        )
