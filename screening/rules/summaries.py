"""Patient and clinician summaries, assembled from the texts in the rules data.

No sentence is written here: headlines, advice, notes and the disclaimer all
come from ``rules/ruleset.yaml``, where they are tested for reading level and
wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from screening.rules.ruleset import Rule
from screening.rules.ruleset import Ruleset


def patient_summary(ruleset: Ruleset, decided: Rule, matched: Sequence[Rule]) -> dict[str, Any]:
    """The plain-language summary the patient reads."""
    assert decided.outcome is not None
    return {
        "headline": ruleset.outcomes[decided.outcome].headline,
        "body": list(decided.patient),
        "notes": [rule.patient_note for rule in matched if rule.patient_note],
        "disclaimer": ruleset.disclaimer,
    }


def _finding(rule: Rule) -> dict[str, Any]:
    return {
        "rule": rule.id,
        "title": rule.title,
        "text": rule.clinician,
        "sources": list(rule.sources),
    }


def clinician_summary(
    answers: Mapping[str, Any], ruleset: Ruleset, decided: Rule, matched: Sequence[Rule]
) -> dict[str, Any]:
    """The clinician's view: every finding with its sources, notes and key answers."""
    assert decided.outcome is not None
    findings = [_finding(rule) for rule in matched if rule.kind == "decision"]
    notes = [_finding(rule) for rule in matched if rule.kind == "note"]
    cited = {source for rule in matched for source in rule.sources}
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
