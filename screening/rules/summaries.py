"""Patient and clinician summaries, assembled from the texts in the rules data.

No sentence is written here: headlines, advice, notes and the disclaimer all
come from ``rules/ruleset.yaml``, where they are tested for reading level and
wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from screening.rules.conditions import Always
from screening.rules.ruleset import Rule
from screening.rules.ruleset import Ruleset


def patient_summary(ruleset: Ruleset, decided: Rule, matched: Sequence[Rule]) -> dict[str, Any]:
    """The plain-language summary the patient reads."""
    assert decided.outcome is not None
    return {
        "headline": ruleset.outcomes[decided.outcome].headline,
        "body": list(decided.patient),
        "notes": [
            rule.patient_note
            for rule in matched
            if rule.patient_note and rule.note_fits(decided.outcome)
        ],
        "disclaimer": ruleset.disclaimer,
    }


def _finding(rule: Rule) -> dict[str, Any]:
    return {
        "rule": rule.id,
        "title": rule.title,
        "text": rule.clinician,
        "sources": list(rule.sources),
    }


def states_a_finding(rule: Rule, decided: Rule) -> bool:
    """Whether a matched rule is a finding of the screening it matched.

    Every decision rule that holds is a finding, except a fallback (a rule that
    always holds) that did not decide: it holds for every screening, so its text
    ("no exclusion found") is true only when nothing above it decided.
    ``matched_rules`` still lists it (rules-v1.md).
    """
    if rule.kind != "decision":
        return False
    return rule is decided or not isinstance(rule.condition, Always)


def clinician_summary(
    answers: Mapping[str, Any], ruleset: Ruleset, decided: Rule, matched: Sequence[Rule]
) -> dict[str, Any]:
    """The clinician's view: every finding with its sources, notes and key answers."""
    assert decided.outcome is not None
    stated = [rule for rule in matched if rule.kind == "note" or states_a_finding(rule, decided)]
    findings = [_finding(rule) for rule in stated if rule.kind == "decision"]
    notes = [_finding(rule) for rule in stated if rule.kind == "note"]
    cited = {source for rule in stated for source in rule.sources}
    return {
        "outcome_label": ruleset.outcomes[decided.outcome].label,
        "card_summary": ruleset.card_summary(decided, len(findings) - 1),
        "findings": findings,
        "notes": notes,
        "key_answers": [
            {
                "linkId": item.link_id,
                "value": answers.get(item.link_id),
                "display": item.display(answers[item.link_id])
                if item.link_id in answers
                else "Not asked",
            }
            for item in ruleset.key_answers
        ],
        "sources": [
            {"id": source.id, "citation": source.citation}
            for source in ruleset.sources.values()
            if source.id in cited
        ],
    }
