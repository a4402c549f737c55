"""CDS Hooks 2.0: a ``patient-view`` service that reads the patient's latest answers.

The EHR prefetches the patient's most recent completed QuestionnaireResponse to
our questionnaire; the service applies the same validation and rules as the API
and returns one card, or no card when there is no response. Discovery is public;
calling the service takes a clinician bearer token for now.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from screening.fhir.forms import canonical_reference
from screening.rules.i18n import DEFAULT
from screening.rules.rulebook import Rulebook
from screening.services import registry
from screening.services.problems import ValidationProblem
from screening.web.auth import require
from screening.web.bodies import json_object

bp = Blueprint("cds", __name__, url_prefix="/cds-services")

SERVICE_ID = "lumbar-rfa-screening"
HOOK = "patient-view"
PREFETCH_KEY = "questionnaireResponse"
NOT_A_DIAGNOSIS = (
    "_Informational decision support, not a diagnosis. It names whom the patient may talk "
    "to; review the answers and the basis before acting._"
)


def _service(rulebook: Rulebook) -> dict[str, Any]:
    reference = canonical_reference(rulebook.questionnaire)
    return {
        "hook": HOOK,
        "id": SERVICE_ID,
        "title": "Low back pain screening summary",
        "description": (
            "Shows the outcome of the patient's latest low back pain screening "
            f"({rulebook.ruleset.id} {rulebook.ruleset.version}) with the rules and sources "
            "behind it."
        ),
        "prefetch": {
            PREFETCH_KEY: (
                "QuestionnaireResponse?subject={{context.patientId}}"
                f"&questionnaire={reference}&status=completed&_sort=-authored&_count=1"
            )
        },
        "usageRequirements": "Send a clinician API key as Authorization: Bearer <token>.",
    }


@bp.get("")
def discovery() -> Response:
    """CDS Hooks discovery: the one service this server offers."""
    return jsonify(services=[_service(registry.rulebook())])


def _latest_response(prefetched: Any, reference: str) -> dict[str, Any] | None:
    """The most recently authored completed response to our questionnaire, if any.

    The prefetch may be a search Bundle or a single resource.
    """
    if isinstance(prefetched, dict) and prefetched.get("resourceType") == "Bundle":
        entries = prefetched.get("entry", [])
        if not isinstance(entries, list):
            raise ValidationProblem(
                {f"prefetch.{PREFETCH_KEY}.entry": ["Must be a list of Bundle entries."]}
            )
        candidates = [entry.get("resource") for entry in entries if isinstance(entry, dict)]
    else:
        candidates = [prefetched]
    responses = [
        resource
        for resource in candidates
        if isinstance(resource, dict)
        and resource.get("resourceType") == "QuestionnaireResponse"
        and resource.get("questionnaire") == reference
        and resource.get("status") == "completed"
    ]
    if not responses:
        return None
    # RFC 3339 instants of one server compare as text; a missing date sorts first.
    return max(responses, key=lambda r: str(r.get("authored") or ""))


def _check_request(body: dict[str, Any]) -> None:
    errors: dict[str, list[str]] = {}
    if body.get("hook") != HOOK:
        errors["hook"] = [f"This service answers the {HOOK} hook."]
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
        errors["hookInstance"] = ["Must be a non-empty string."]
    context = body.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str):
        errors["context.patientId"] = ["Must be a string."]
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        errors["prefetch"] = ["Must be an object."]
    if errors:
        raise ValidationProblem(errors)


def _detail(result: dict[str, Any], rulebook: Rulebook) -> str:
    """The card's Markdown: outcome, every finding with its sources, notes, citations."""
    clinician = result["summary"]["clinician"]
    lines = [f"**Outcome:** {clinician['outcome_label']}", "", "**Findings**"]
    for finding in clinician["findings"]:
        sources = ", ".join(finding["sources"])
        lines.append(f"- **{finding['title']}**: {finding['text']} ({sources})")
    if clinician["notes"]:
        lines += ["", "**Notes**"]
        lines += [f"- **{note['title']}**: {note['text']}" for note in clinician["notes"]]
    lines += ["", "**Sources**"]
    lines += [f"- {source['id']}: {source['citation']}" for source in clinician["sources"]]
    lines += ["", NOT_A_DIAGNOSIS]
    return "\n".join(lines)


def card_for(result: dict[str, Any], rulebook: Rulebook, review_url: str) -> dict[str, Any]:
    """The one card for a result."""
    ruleset = rulebook.ruleset
    return {
        "uuid": str(uuid.uuid4()),
        "summary": result["summary"]["clinician"]["card_summary"],
        "indicator": ruleset.outcomes[result["outcome"]].indicator,
        "detail": _detail(result, rulebook),
        "source": {"label": f"Screening rules {ruleset.id} {ruleset.version}"},
        "links": [
            {"label": "Open the screening review page", "url": review_url, "type": "absolute"}
        ],
    }


@bp.post(f"/{SERVICE_ID}")
@require("clinician")
def patient_view() -> Response:
    """One card for the latest completed response in the prefetch, or none."""
    _, body = json_object()
    _check_request(body)
    rulebook = registry.rulebook()
    prefetch = body.get("prefetch") or {}
    latest = _latest_response(
        prefetch.get(PREFETCH_KEY), canonical_reference(rulebook.questionnaire)
    )
    if latest is None:
        return jsonify(cards=[])
    where = f"prefetch.{PREFETCH_KEY}"
    try:
        # The card is for clinicians: the summary stays in English.
        submission = registry.screenings().check_fhir_submission(
            latest, registry.catalogs()[DEFAULT]
        )
    except ValidationProblem as exc:
        errors = exc.errors or {}
        raise ValidationProblem(
            {f"{where}.{key}": messages for key, messages in errors.items()}
        ) from None
    result = submission.result
    review_url = request.host_url.rstrip("/") + "/review/"
    return jsonify(cards=[card_for(result, rulebook, review_url)])
