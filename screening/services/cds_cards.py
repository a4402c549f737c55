"""What a CDS Hooks ``patient-view`` call reads and gives: the patient's latest completed
response to a served questionnaire, and one card for its result.

Pure functions over the rulebook and a result; ``CdsService.patient_view`` runs them.
"""

from __future__ import annotations

import uuid
from typing import Any

from screening.fhir.forms import canonical_reference
from screening.records import Card
from screening.records import CardLink
from screening.records import Result
from screening.rules.rulebook import Package
from screening.rules.rulebook import Rulebook
from screening.services.problems import ValidationProblem

#: The prefetch template's key, in discovery and in a hook request.
PREFETCH_KEY = "questionnaireResponse"
PATIENT_PLACEHOLDER = "{{context.patientId}}"
NOT_A_DIAGNOSIS = (
    "_Informational decision support, not a diagnosis. It names whom the patient may talk "
    "to; review the answers and the basis before acting._"
)


def prefetch_query(rulebook: Rulebook) -> str:
    """The FHIR search for the patient's latest completed response to our questionnaire.

    It names the current version: servers differ on whether a canonical without a version
    matches versioned references (Medplum's does not), so an unversioned search could miss
    every response. A prefetch the EHR builds itself may still carry earlier served versions.
    """
    reference = canonical_reference(rulebook.questionnaire)
    return (
        f"QuestionnaireResponse?subject=Patient/{PATIENT_PLACEHOLDER}"
        f"&questionnaire={reference}&status=completed&_sort=-authored&_count=1"
    )


def _served(reference: Any, rulebook: Rulebook) -> bool:
    """Whether a response's ``questionnaire`` names a version of ours that is served."""
    if not isinstance(reference, str):
        return False
    url, _, version = reference.partition("|")
    return rulebook.for_canonical(url, version) is not None


def latest_response(prefetched: Any, rulebook: Rulebook) -> dict[str, object] | None:
    """The most recently authored completed response to a served version of our
    questionnaire, if any (it is decided by that version's default package).

    The prefetch may be a search Bundle or a single resource.
    """
    if isinstance(prefetched, dict) and prefetched.get("resourceType") == "Bundle":
        entries = prefetched.get("entry", [])
        if not isinstance(entries, list):
            raise ValidationProblem({"entry": ["Must be a list of Bundle entries."]})
        candidates = [entry.get("resource") for entry in entries if isinstance(entry, dict)]
    else:
        candidates = [prefetched]
    responses = [
        resource
        for resource in candidates
        if isinstance(resource, dict)
        and resource.get("resourceType") == "QuestionnaireResponse"
        and _served(resource.get("questionnaire"), rulebook)
        and resource.get("status") == "completed"
    ]
    if not responses:
        return None
    # RFC 3339 instants of one server compare as text; a missing date sorts first.
    return max(responses, key=lambda r: str(r.get("authored") or ""))


def _detail(result: Result) -> str:
    """The card's Markdown: outcome, every finding with its sources, notes, citations."""
    clinician = result.clinician
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


def card_for(
    result: Result,
    package: Package,
    review_url: str | None,
    *,
    stored: bool = False,
    smart_url: str | None = None,
) -> Card:
    """The one card for a result of ``package``'s rules, linking to ``review_url`` (a
    screening's page when ``stored``, else the list); no link without one."""
    ruleset = package.ruleset
    card: Card = {
        "uuid": str(uuid.uuid4()),
        "summary": result.clinician["card_summary"],
        "indicator": ruleset.outcomes[result.outcome].indicator,
        "detail": _detail(result),
        "source": {"label": f"Screening rules {ruleset.id} {ruleset.version}"},
    }
    if review_url is not None:
        label = (
            "Open the stored screening with these answers"
            if stored
            else "Open the screening review list"
        )
        card["links"] = [{"label": label, "url": review_url, "type": "absolute"}]
    if smart_url is not None:
        # The EHR launches it (SMART App Launch), signed in as the clinician at the EHR.
        link: CardLink = {
            "label": "Open the screening review in the EHR",
            "url": smart_url,
            "type": "smart",
        }
        card["links"] = [*card.get("links", []), link]
    return card


def moved(exc: ValidationProblem, where: str) -> ValidationProblem:
    """The same problem with its fields named under ``where``."""
    errors = exc.errors or {}
    return ValidationProblem({f"{where}.{key}": messages for key, messages in errors.items()})
