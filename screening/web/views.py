"""The caller's view of a screening: full for clinicians, patient view for the portal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from screening.services.screenings import Page
from screening.timestamps import rfc3339


def _maybe_rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _questionnaire(record: dict[str, Any]) -> dict[str, str]:
    return {"id": record["questionnaire_id"], "version": record["questionnaire_version"]}


def _ruleset(record: dict[str, Any]) -> dict[str, str]:
    return {
        "id": record["ruleset_id"],
        "version": record["ruleset_version"],
        "sha256": record["ruleset_sha256"],
    }


def _clinician_view(record: dict[str, Any]) -> dict[str, Any]:
    """The result as a clinician sees it, without the review."""
    result = record["result"]
    return {
        "id": record["id"],
        "created_at": rfc3339(record["created_at"]),
        "patient_ref": record["patient_ref"],
        "language": record["language"],
        "questionnaire": _questionnaire(record),
        "ruleset": _ruleset(record),
        "answers": record["answers"],
        "outcome": result["outcome"],
        "decided_by": result["decided_by"],
        "matched_rules": result["matched_rules"],
        "summary": result["summary"],
        "trace": result["trace"],
        # Stored before shadow evaluation existed: no shadow ruleset applied.
        "shadow": result.get("shadow", []),
    }


def full_view(record: dict[str, Any]) -> dict[str, Any]:
    """Everything a clinician needs to review a screening, its review's due time included."""
    history = record.get("reviews", [])
    return {
        **_clinician_view(record),
        "review": {
            "status": record["review_status"],
            "due_at": _maybe_rfc3339(record["review_due_at"]),
            "overdue": record["review_overdue"],
            "history": [
                {"at": rfc3339(review["at"]), "by": review["by"], "note": review["note"]}
                for review in history
            ],
        },
    }


def patient_view(record: dict[str, Any]) -> dict[str, Any]:
    """What the patient portal may show: the outcome and the patient summary."""
    result = record["result"]
    # Exactly api-v1.md's patient view; its language travels as Content-Language.
    return {
        "id": record["id"],
        "created_at": rfc3339(record["created_at"]),
        "questionnaire": _questionnaire(record),
        "ruleset": _ruleset(record),
        "outcome": result["outcome"],
        "summary": {"patient": result["summary"]["patient"]},
    }


def list_item_view(row: dict[str, Any]) -> dict[str, Any]:
    """One row of the clinician list: enough to triage, without answers or trace."""
    return {
        "id": row["id"],
        "created_at": rfc3339(row["created_at"]),
        "patient_ref": row["patient_ref"],
        "language": row["language"],
        "questionnaire": _questionnaire(row),
        "ruleset": _ruleset(row),
        "outcome": row["outcome"],
        "decided_by": row["decided_by"],
        "card_summary": row["card_summary"],
        "review_status": row["review_status"],
        "review_due_at": _maybe_rfc3339(row["review_due_at"]),
        "review_overdue": row["review_overdue"],
    }


def evaluation_view(record: dict[str, Any], role: str) -> dict[str, Any]:
    """``POST /v1/evaluate``: the caller's view without id, created_at or review."""
    if role == "clinician":
        view = _clinician_view(record)
    else:
        view = patient_view(record)
    del view["id"], view["created_at"]
    return view


def caller_view(record: dict[str, Any], role: str) -> dict[str, Any]:
    """The screening as a caller of this role may see it."""
    return full_view(record) if role == "clinician" else patient_view(record)


def list_view(page: Page) -> dict[str, Any]:
    """A page of the clinician list: its rows and the cursor of the next page."""
    return {"items": [list_item_view(row) for row in page.rows], "next_cursor": page.next_cursor}
