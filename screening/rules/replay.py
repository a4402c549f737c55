"""What a candidate ruleset would change on past screenings (``rules replay``).

Pure and streaming: ``Replay.add`` takes one stored screening at a time and keeps only
counts; each change is handed back to the caller to print at once, so memory stays
flat whatever the number of screenings.

A candidate on a new questionnaire version has no screenings of its own before it is
released. Given ``questionnaire``, a replay reads the answers of an earlier version
against the candidate's questionnaire: each set that is valid there is decided again,
and each that is not (the new version asks something they were not asked) is counted,
by the items it lacks, and left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import NotRequired
from typing import TypedDict

from screening.rules.engine import decide
from screening.rules.questionnaire import Questionnaire
from screening.rules.results import RulesetName
from screening.rules.ruleset import Ruleset

#: How many replayed screenings went from one outcome to another (or kept it).
Transition = TypedDict("Transition", {"from": str, "to": str, "count": int})


class NotReplayed(TypedDict):
    """Screenings whose answers lack what the candidate's questionnaire asks, by item."""

    count: int
    items: dict[str, int]


class ReplaySummary(TypedDict):
    """rules-lifecycle-v1.md's replay totals."""

    candidate: RulesetName
    screenings: int
    changed: int
    transitions: list[Transition]
    not_replayed: NotRequired[NotReplayed]


@dataclass(slots=True)
class Replay:
    """Counts for one candidate over a stream of stored screenings."""

    ruleset: Ruleset
    #: Set when the stored answers are of another questionnaire version: they are read
    #: against this one (the candidate's) first.
    questionnaire: Questionnaire | None = None
    changed: int = 0
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Screenings left out, and how often each item made their answers invalid.
    not_replayed: int = 0
    not_replayed_items: dict[str, int] = field(default_factory=dict)

    def add(
        self, screening_id: str, answers: Mapping[str, Any], outcome: str, decided_by: str
    ) -> dict[str, str] | None:
        """Replay one screening; its change when the outcome or deciding rule differs."""
        if self.questionnaire is not None:
            answers, errors = self.questionnaire.validate(answers)
            if errors:
                self.not_replayed += 1
                for link_id in errors:
                    self.not_replayed_items[link_id] = self.not_replayed_items.get(link_id, 0) + 1
                return None
        rule = decide(answers, self.ruleset)
        new_outcome, new_rule = rule.outcome, rule.id
        assert new_outcome is not None
        pair = (outcome, new_outcome)
        self.transitions[pair] = self.transitions.get(pair, 0) + 1
        if new_outcome == outcome and new_rule == decided_by:
            return None
        self.changed += 1
        return {
            "id": screening_id,
            "from": outcome,
            "to": new_outcome,
            "decided_by_from": decided_by,
            "decided_by_to": new_rule,
        }

    def summary(self) -> ReplaySummary:
        """The totals, in the shape of rules-lifecycle-v1.md's JSON (without changes)."""
        ruleset = self.ruleset
        summary: ReplaySummary = {
            "candidate": {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256},
            "screenings": sum(self.transitions.values()),
            "changed": self.changed,
            "transitions": [
                {"from": a, "to": b, "count": n} for (a, b), n in sorted(self.transitions.items())
            ],
        }
        if self.questionnaire is not None:
            summary["not_replayed"] = {
                "count": self.not_replayed,
                "items": dict(sorted(self.not_replayed_items.items())),
            }
        return summary
