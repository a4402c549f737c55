"""A screening as a row of the ``screenings`` table and back: the columns, and the JSON
documents the ``result`` column keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NotRequired
from typing import TypedDict

from screening.records import ListRow
from screening.records import QuestionnaireRef
from screening.records import Result
from screening.records import Review
from screening.records import RulesetRef
from screening.records import Screening
from screening.records import ShadowJson
from screening.records import ShadowOutcome
from screening.rules.results import Summary
from screening.rules.results import TraceEntry
from screening.storage.database import AnyRow


class StoredResult(TypedDict):
    """The ``result`` column: the engine's result less its ruleset (kept in columns of its
    own), with the shadow rulesets' outcomes (none on a screening stored before those)."""

    outcome: str
    decided_by: str
    matched_rules: list[str]
    summary: Summary
    trace: list[TraceEntry]
    shadow: NotRequired[list[ShadowJson]]


def result_document(result: Result) -> StoredResult:
    """A result as the ``result`` column keeps it (its ruleset is in columns of its own)."""
    return {
        "outcome": result.outcome,
        "decided_by": result.decided_by,
        "matched_rules": list(result.matched_rules),
        "summary": result.summary,
        "trace": list(result.trace),
        "shadow": [shadow.as_json() for shadow in result.shadow],
    }


def result_from(document: StoredResult) -> Result:
    """The ``result`` column as a ``Result`` (a screening stored before shadow rulesets
    existed has none)."""
    return Result(
        outcome=document["outcome"],
        decided_by=document["decided_by"],
        matched_rules=tuple(document["matched_rules"]),
        summary=document["summary"],
        trace=document["trace"],
        shadow=tuple(ShadowOutcome.from_json(shadow) for shadow in document.get("shadow", [])),
    )


def screening_row(screening: Screening) -> dict[str, object]:
    """A screening as a row of the ``screenings`` table."""
    return {
        "id": screening.id,
        "created_at": screening.created_at,
        "created_by": screening.created_by,
        "patient_ref": screening.patient_ref,
        "language": screening.language,
        "questionnaire_id": screening.questionnaire.id,
        "questionnaire_version": screening.questionnaire.version,
        "questionnaire_sha256": screening.questionnaire.sha256,
        "ruleset_id": screening.ruleset.id,
        "ruleset_version": screening.ruleset.version,
        "ruleset_sha256": screening.ruleset.sha256,
        "outcome": screening.outcome,
        "review_status": screening.review_status,
        "answers": screening.answers,
        "result": result_document(screening.result),
        "source": screening.source,
        "answers_sha256": screening.answers_sha256,
    }


def screening_from(row: AnyRow, history: Sequence[AnyRow]) -> Screening:
    """A row of the ``screenings`` table, with its reviews, as a ``Screening``."""
    return Screening(
        id=row.id,
        created_at=row.created_at,
        created_by=row.created_by,
        patient_ref=row.patient_ref,
        language=row.language,
        questionnaire=QuestionnaireRef(
            row.questionnaire_id, row.questionnaire_version, row.questionnaire_sha256
        ),
        ruleset=RulesetRef(row.ruleset_id, row.ruleset_version, row.ruleset_sha256),
        review_status=row.review_status,
        answers=row.answers,
        answers_sha256=row.answers_sha256,
        result=result_from(row.result),
        source=row.source,
        reviews=tuple(Review(r.at, r.by, r.note, r.by_id) for r in history),
    )


def list_row(row: AnyRow) -> ListRow:
    """A row of the list's query as a ``ListRow``."""
    return ListRow(
        id=row.id,
        created_at=row.created_at,
        created_by=row.created_by,
        patient_ref=row.patient_ref,
        language=row.language,
        questionnaire=QuestionnaireRef(row.questionnaire_id, row.questionnaire_version),
        ruleset=RulesetRef(row.ruleset_id, row.ruleset_version, row.ruleset_sha256),
        outcome=row.outcome,
        review_status=row.review_status,
        decided_by=row.decided_by,
        card_summary=row.card_summary,
    )
