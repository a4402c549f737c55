"""The API's serializers: a screening as JSON, full for clinicians, the patient view for
the portal. Times become RFC 3339 here and nowhere before.

Each view is a ``TypedDict`` with the fields openapi.yaml gives it (the spec-checking test
client holds the two together), built in the order the document lists them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from screening.records import ListRow
from screening.records import QuestionnaireRef
from screening.records import Screening
from screening.records import ShadowJson
from screening.rules.questionnaire import Answers
from screening.rules.results import PatientSummary
from screening.rules.results import QuestionnaireName
from screening.rules.results import RulesetName
from screening.rules.results import Summary
from screening.rules.results import TraceEntry
from screening.services.screenings import Page
from screening.timestamps import rfc3339


class PatientOnly(TypedDict):
    patient: PatientSummary


class PatientEvaluation(TypedDict):
    """``POST /v1/evaluate`` for a portal: the outcome and the patient summary."""

    questionnaire: QuestionnaireName
    ruleset: RulesetName
    outcome: str
    summary: PatientOnly


class PatientScreening(PatientEvaluation):
    """A stored screening as its portal reads it (api-v1.md's patient view)."""

    id: str
    created_at: str


class ClinicianEvaluation(TypedDict):
    """``POST /v1/evaluate`` for a clinician: the whole result with the answers."""

    patient_ref: str | None
    language: str
    questionnaire: QuestionnaireName
    ruleset: RulesetName
    answers: Answers
    outcome: str
    decided_by: str
    matched_rules: list[str]
    summary: Summary
    trace: list[TraceEntry]
    shadow: list[ShadowJson]


class ReviewEntry(TypedDict):
    at: str
    by: str
    by_id: str | None
    note: str | None


class ReviewJson(TypedDict):
    status: str
    due_at: str | None
    overdue: bool
    history: list[ReviewEntry]


class ClinicianScreening(ClinicianEvaluation):
    """A stored screening as a clinician reads it, with its review."""

    id: str
    created_at: str
    review: ReviewJson


class ListItem(TypedDict):
    """One row of the clinician list: enough to triage, without answers or trace."""

    id: str
    created_at: str
    patient_ref: str | None
    language: str
    questionnaire: QuestionnaireName
    ruleset: RulesetName
    outcome: str
    decided_by: str
    card_summary: str
    review_status: str
    review_due_at: str | None
    review_overdue: bool


class ListPage(TypedDict):
    items: list[ListItem]
    next_cursor: str | None


def _maybe_rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _questionnaire(questionnaire: QuestionnaireRef) -> QuestionnaireName:
    return {"id": questionnaire.id, "version": questionnaire.version}


def _clinician_evaluation(screening: Screening) -> ClinicianEvaluation:
    """The result as a clinician sees it, without id, time or review."""
    result = screening.result
    return {
        "patient_ref": screening.patient_ref,
        "language": screening.language,
        "questionnaire": _questionnaire(screening.questionnaire),
        "ruleset": screening.ruleset.as_json(),
        "answers": screening.answers,
        "outcome": result.outcome,
        "decided_by": result.decided_by,
        "matched_rules": list(result.matched_rules),
        "summary": result.summary,
        "trace": list(result.trace),
        "shadow": [shadow.as_json() for shadow in result.shadow],
    }


def full_view(screening: Screening) -> ClinicianScreening:
    """Everything a clinician needs to review a screening, its review's due time included."""
    return {
        "id": screening.id,
        "created_at": rfc3339(screening.created_at),
        **_clinician_evaluation(screening),
        "review": {
            "status": screening.review_status,
            "due_at": _maybe_rfc3339(screening.review_due_at),
            "overdue": screening.review_overdue,
            "history": [
                {
                    "at": rfc3339(review.at),
                    "by": review.by,
                    "by_id": review.by_id,
                    "note": review.note,
                }
                for review in screening.reviews
            ],
        },
    }


def _patient_evaluation(screening: Screening) -> PatientEvaluation:
    """What a portal may show: the outcome and the patient summary."""
    return {
        "questionnaire": _questionnaire(screening.questionnaire),
        "ruleset": screening.ruleset.as_json(),
        "outcome": screening.outcome,
        "summary": {"patient": screening.result.patient},
    }


def patient_view(screening: Screening) -> PatientScreening:
    """A stored screening as its portal reads it."""
    # Exactly api-v1.md's patient view; its language travels as Content-Language.
    return {
        "id": screening.id,
        "created_at": rfc3339(screening.created_at),
        **_patient_evaluation(screening),
    }


def list_item_view(row: ListRow) -> ListItem:
    """One row of the clinician list."""
    return {
        "id": row.id,
        "created_at": rfc3339(row.created_at),
        "patient_ref": row.patient_ref,
        "language": row.language,
        "questionnaire": _questionnaire(row.questionnaire),
        "ruleset": row.ruleset.as_json(),
        "outcome": row.outcome,
        "decided_by": row.decided_by,
        "card_summary": row.card_summary,
        "review_status": row.review_status,
        "review_due_at": _maybe_rfc3339(row.review_due_at),
        "review_overdue": row.review_overdue,
    }


def evaluation_view(screening: Screening, role: str) -> ClinicianEvaluation | PatientEvaluation:
    """``POST /v1/evaluate``: the caller's view without id, created_at or review."""
    if role == "clinician":
        return _clinician_evaluation(screening)
    return _patient_evaluation(screening)


def caller_view(screening: Screening, role: str) -> ClinicianScreening | PatientScreening:
    """The screening as a caller of this role may see it."""
    return full_view(screening) if role == "clinician" else patient_view(screening)


def list_view(page: Page) -> ListPage:
    """A page of the clinician list: its rows and the cursor of the next page."""
    return {"items": [list_item_view(row) for row in page.rows], "next_cursor": page.next_cursor}
