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
from screening.rules.results import ClinicianSummary
from screening.rules.results import Finding
from screening.rules.results import KeyAnswer
from screening.rules.results import PatientSummary
from screening.rules.ruleset import NOT_ASKED
from screening.rules.ruleset import Rule
from screening.rules.ruleset import Ruleset


def patient_summary(ruleset: Ruleset, decided: Rule, matched: Sequence[Rule]) -> PatientSummary:
    """The plain-language summary the patient reads."""
    assert decided.outcome is not None
    return {
        "headline": ruleset.outcomes[decided.outcome].headline,
        "body": list(decided.patient),
        "notes": [
            rule.patient_note
            for rule in matched
            if rule.patient_note is not None and rule.note_fits(decided.outcome)
        ],
        "disclaimer": ruleset.disclaimer,
    }


def _finding(rule: Rule, answers: Mapping[str, Any]) -> Finding:
    return {
        "rule": rule.id,
        "title": rule.title,
        "text": rule.clinician_text(answers),
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
) -> ClinicianSummary:
    """The clinician's view: every finding with its sources, notes and key answers."""
    assert decided.outcome is not None
    findings: list[Finding] = []
    notes: list[Finding] = []
    cited: set[str] = set()
    # One pass over the matched rules; decision findings and notes keep rule order. A
    # fallback that did not decide is no finding of this screening (states_a_finding).
    for rule in matched:
        if rule.kind == "note":
            notes.append(_finding(rule, answers))
        elif states_a_finding(rule, decided):
            findings.append(_finding(rule, answers))
        else:
            continue
        cited.update(rule.sources)
    key_answers: list[KeyAnswer] = []
    for link_id, known_type, words, display in ruleset.key_displays:
        if link_id in answers:
            value = answers[link_id]
            # A yes/no or a code: its words were looked up at load (the same text display() gives).
            text = words[value] if type(value) is known_type and value in words else display(value)
        else:
            value, text = None, NOT_ASKED.capitalize()
        key_answers.append({"linkId": link_id, "value": value, "display": text})
    return {
        "outcome_label": ruleset.outcomes[decided.outcome].label,
        "card_summary": ruleset.card_summary(decided, len(findings) - 1),
        "findings": findings,
        "notes": notes,
        "key_answers": key_answers,
        "sources": [
            {"id": source_id, "citation": citation}
            for source_id, citation in ruleset.source_citations
            if source_id in cited
        ],
    }
