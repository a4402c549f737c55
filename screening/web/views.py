"""The API's serializers: a screening as JSON, full for clinicians, the patient view for
the portal. Times become RFC 3339 here and nowhere before."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from screening.records import ListRow
from screening.records import QuestionnaireRef
from screening.records import Result
from screening.records import RulesetRef
from screening.records import Screening
from screening.services.screenings import Page
from screening.timestamps import rfc3339


def _maybe_rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _questionnaire(questionnaire: QuestionnaireRef) -> dict[str, str]:
    return {"id": questionnaire.id, "version": questionnaire.version}


def _ruleset(ruleset: RulesetRef) -> dict[str, str]:
    return {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256}


def _shadows(result: Result) -> list[dict[str, Any]]:
    """Each shadow ruleset's outcome, as stored (none before shadow evaluation existed)."""
    return [
        {
            "ruleset": _ruleset(shadow.ruleset),
            "outcome": shadow.outcome,
            "decided_by": shadow.decided_by,
            "matched_rules": list(shadow.matched_rules),
        }
        for shadow in result.shadow
    ]


def _clinician_view(screening: Screening) -> dict[str, Any]:
    """The result as a clinician sees it, without the review."""
    result = screening.result
    return {
        "id": screening.id,
        "created_at": rfc3339(screening.created_at),
        "patient_ref": screening.patient_ref,
        "language": screening.language,
        "questionnaire": _questionnaire(screening.questionnaire),
        "ruleset": _ruleset(screening.ruleset),
        "answers": screening.answers,
        "outcome": result.outcome,
        "decided_by": result.decided_by,
        "matched_rules": list(result.matched_rules),
        "summary": result.summary,
        "trace": result.trace,
        "shadow": _shadows(result),
    }


def full_view(screening: Screening) -> dict[str, Any]:
    """Everything a clinician needs to review a screening, its review's due time included."""
    return {
        **_clinician_view(screening),
        "review": {
            "status": screening.review_status,
            "due_at": _maybe_rfc3339(screening.review_due_at),
            "overdue": screening.review_overdue,
            "history": [
                {"at": rfc3339(review.at), "by": review.by, "note": review.note}
                for review in screening.reviews
            ],
        },
    }


def patient_view(screening: Screening) -> dict[str, Any]:
    """What the patient portal may show: the outcome and the patient summary."""
    # Exactly api-v1.md's patient view; its language travels as Content-Language.
    return {
        "id": screening.id,
        "created_at": rfc3339(screening.created_at),
        "questionnaire": _questionnaire(screening.questionnaire),
        "ruleset": _ruleset(screening.ruleset),
        "outcome": screening.outcome,
        "summary": {"patient": screening.result.patient},
    }


def list_item_view(row: ListRow) -> dict[str, Any]:
    """One row of the clinician list: enough to triage, without answers or trace."""
    return {
        "id": row.id,
        "created_at": rfc3339(row.created_at),
        "patient_ref": row.patient_ref,
        "language": row.language,
        "questionnaire": _questionnaire(row.questionnaire),
        "ruleset": _ruleset(row.ruleset),
        "outcome": row.outcome,
        "decided_by": row.decided_by,
        "card_summary": row.card_summary,
        "review_status": row.review_status,
        "review_due_at": _maybe_rfc3339(row.review_due_at),
        "review_overdue": row.review_overdue,
    }


def evaluation_view(screening: Screening, role: str) -> dict[str, Any]:
    """``POST /v1/evaluate``: the caller's view without id, created_at or review."""
    if role == "clinician":
        view = _clinician_view(screening)
    else:
        view = patient_view(screening)
    del view["id"], view["created_at"]
    return view


def caller_view(screening: Screening, role: str) -> dict[str, Any]:
    """The screening as a caller of this role may see it."""
    return full_view(screening) if role == "clinician" else patient_view(screening)


def list_view(page: Page) -> dict[str, Any]:
    """A page of the clinician list: its rows and the cursor of the next page."""
    return {"items": [list_item_view(row) for row in page.rows], "next_cursor": page.next_cursor}
