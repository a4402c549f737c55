"""The rules engine: a pure function from validated answers and a ruleset to a result.

It imports nothing from Flask or the database, so it is tested, benchmarked and
run from the command line as plain Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any
from typing import Protocol

from screening.rules.results import EngineResult
from screening.rules.results import PatientSummary
from screening.rules.results import Step
from screening.rules.results import TraceEntry
from screening.rules.ruleset import Rule
from screening.rules.ruleset import Ruleset
from screening.rules.summaries import clinician_summary
from screening.rules.summaries import patient_summary

#: The language the rules data is written in.
ENGLISH = "en"


class PatientTexts(Protocol):
    """The patient's words in one language (an ``i18n.Catalog``)."""

    @property
    def language(self) -> str: ...

    def summary_for(self, decided_by: str, matched_rules: Iterable[str]) -> PatientSummary: ...


def evaluate(
    answers: Mapping[str, Any], ruleset: Ruleset, texts: PatientTexts | None = None
) -> EngineResult:
    """Apply every rule to ``answers`` (already validated) and build the result, with the
    patient summary in the language of ``texts`` (the ruleset's own English without them).

    The first decision rule that holds decides the outcome; every rule that
    holds, decision or note, is listed in ``matched_rules`` in rule order, and
    the trace shows each comparison of each rule. A note that names its outcomes
    (``with_outcomes``) holds only on a result with one of them.
    """
    trace: list[TraceEntry] = []
    matched: list[Rule] = []
    decided: Rule | None = None
    # Notes that name their outcomes and held: whether each goes with the result is
    # known only once the outcome is (see below).
    restricted: list[tuple[Rule, TraceEntry]] = []
    add_to_trace = trace.append
    # Each step holds the rule's compiled condition (see conditions.py): no tree walk here.
    for rule, rule_id, traced, decides in ruleset.steps:
        conditions: list[Step] = []
        held = traced(answers, conditions)
        entry: TraceEntry = {"rule": rule_id, "matched": held, "conditions": conditions}
        add_to_trace(entry)
        if held:
            matched.append(rule)
            if decides:
                if decided is None:
                    decided = rule
            elif rule.with_outcomes:
                restricted.append((rule, entry))
    # The loader guarantees the last decision rule always holds.
    assert decided is not None and decided.outcome is not None
    # A note that does not go with the outcome holds nowhere: not matched, no line; its
    # trace keeps the comparisons, marked so a reader sees why it did not match.
    for rule, entry in restricted:
        if not rule.goes_with(decided.outcome):
            matched.remove(rule)
            entry["matched"] = False
            entry["outcome_fits"] = False
    return {
        "outcome": decided.outcome,
        "decided_by": decided.id,
        "matched_rules": [rule.id for rule in matched],
        "summary": {
            "patient": (
                patient_summary(ruleset, decided, matched)
                if texts is None or texts.language == ENGLISH
                else texts.summary_for(decided.id, [rule.id for rule in matched])
            ),
            "clinician": clinician_summary(answers, ruleset, decided, matched),
        },
        "trace": trace,
        "ruleset": {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256},
    }


def decide(answers: Mapping[str, Any], ruleset: Ruleset) -> Rule:
    """The rule that decides ``answers``, as ``evaluate`` finds it, and nothing else.

    The first decision rule that holds, tested with the same compiled conditions but
    without a trace, and stopping there: no note rule, texts or summaries. For reading
    many stored screenings again (``rules replay``).
    """
    for holds, rule in ruleset.decisions:
        if holds(answers):
            return rule
    # The loader guarantees the last decision rule always holds.
    raise AssertionError(f"ruleset {ruleset.id} {ruleset.version}: no decision rule held")
