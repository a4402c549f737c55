"""What the engine writes, field by field: the result of one evaluation and its parts.

``TypedDict``s, not classes: a result is a JSON document (stored as it is, served by the
API, compared by rule cases), and these name every field of it for the type checker.
rules-v1.md describes each field.
"""

from __future__ import annotations

from typing import NotRequired
from typing import TypedDict


class PatientSummary(TypedDict):
    """The plain-language summary a patient reads, in one language."""

    headline: str
    body: list[str]
    notes: list[str]
    disclaimer: str


class Finding(TypedDict):
    """A matched rule as the clinician reads it: a finding, or a note."""

    rule: str
    title: str
    text: str
    sources: list[str]


class KeyAnswer(TypedDict):
    """An answer the ruleset names as key, with its words (``value`` None when not asked)."""

    linkId: str
    value: object
    display: str


class Citation(TypedDict):
    """A source the findings cite."""

    id: str
    citation: str


class ClinicianSummary(TypedDict):
    """The clinician's view: the outcome's label, the card's words, findings, notes, the
    key answers and the sources cited."""

    outcome_label: str
    card_summary: str
    findings: list[Finding]
    notes: list[Finding]
    key_answers: list[KeyAnswer]
    sources: list[Citation]


class Summary(TypedDict):
    """Both summaries of a result."""

    patient: PatientSummary
    clinician: ClinicianSummary


class Step(TypedDict):
    """One comparison of a rule's condition: the answer it read and whether it held."""

    linkId: str
    operator: str
    expected: object
    actual: object
    held: bool


class TraceEntry(TypedDict):
    """One rule of the trace: whether it matched, and each comparison it made."""

    rule: str
    matched: bool
    conditions: list[Step]
    #: Present, and false, on a note that held but does not go with the outcome.
    outcome_fits: NotRequired[bool]


class QuestionnaireName(TypedDict):
    """A questionnaire, by id and version."""

    id: str
    version: str


class RulesetName(TypedDict):
    """The rules a result came from."""

    id: str
    version: str
    sha256: str


class EngineResult(TypedDict):
    """``evaluate()``'s result."""

    outcome: str
    decided_by: str
    matched_rules: list[str]
    summary: Summary
    trace: list[TraceEntry]
    ruleset: RulesetName
