"""What a candidate ruleset would change on past screenings (``rules replay``).

Pure and streaming: ``Replay.add`` takes one stored screening at a time and keeps only
counts; each change is handed back to the caller to print at once, so memory stays
flat whatever the number of screenings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from screening.rules.engine import decide
from screening.rules.ruleset import Ruleset


@dataclass(slots=True)
class Replay:
    """Counts for one candidate over a stream of stored screenings."""

    ruleset: Ruleset
    changed: int = 0
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(
        self, screening_id: str, answers: Mapping[str, Any], outcome: str, decided_by: str
    ) -> dict[str, str] | None:
        """Replay one screening; its change when the outcome or deciding rule differs."""
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

    def summary(self) -> dict[str, Any]:
        """The totals, in the shape of rules-lifecycle-v1.md's JSON (without changes)."""
        ruleset = self.ruleset
        return {
            "candidate": {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256},
            "screenings": sum(self.transitions.values()),
            "changed": self.changed,
            "transitions": [
                {"from": a, "to": b, "count": n} for (a, b), n in sorted(self.transitions.items())
            ],
        }
