"""CDS Hooks 2.0: a ``patient-view`` service that reads the patient's latest answers.

The EHR prefetches the patient's most recent completed QuestionnaireResponse to
our questionnaire, or passes ``fhirServer`` and ``fhirAuthorization`` for the
service to fetch it; the service applies the same validation and rules as the API
and returns one card, or no card when there is no response. Each card is stored
by its uuid, and the EHR's feedback on it is stored and shown on the review page.

EHRs authenticate with a JWT signed by their own key (``SCREENING_CDS_CLIENTS``;
checked in ``screening.services.cds``); clinician API keys keep working. Discovery
is public, but a JWT sent to it is checked like any other.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any
from typing import TypeVar
from typing import cast
from urllib.parse import quote

from flask import Blueprint
from flask import Response
from flask import g
from flask import jsonify
from flask import request

from screening.fhir.forms import canonical_reference
from screening.rules.i18n import DEFAULT
from screening.rules.rulebook import Package
from screening.rules.rulebook import Rulebook
from screening.services import registry
from screening.services.cds import CdsClient
from screening.services.cds import FetchFailed
from screening.services.cds import TokenRefused
from screening.services.cds import fetch_resource
from screening.services.problems import ProblemError
from screening.services.problems import ValidationProblem
from screening.web import schemas
from screening.web.auth import authenticate
from screening.web.auth import authorize
from screening.web.auth import presented_token
from screening.web.auth import unauthorized
from screening.web.bodies import json_object

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("cds", __name__, url_prefix="/cds-services")

SERVICE_ID = "lumbar-rfa-screening"
HOOK = schemas.CDS_HOOK
PREFETCH_KEY = "questionnaireResponse"
PATIENT_PLACEHOLDER = "{{context.patientId}}"
NOT_A_DIAGNOSIS = (
    "_Informational decision support, not a diagnosis. It names whom the patient may talk "
    "to; review the answers and the basis before acting._"
)


def _prefetch_query(rulebook: Rulebook) -> str:
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


def _service(rulebook: Rulebook) -> dict[str, Any]:
    return {
        "hook": HOOK,
        "id": SERVICE_ID,
        "title": "Low back pain screening summary",
        "description": (
            "Shows the outcome of the patient's latest low back pain screening "
            f"({rulebook.ruleset.id} {rulebook.ruleset.version}) with the rules and sources "
            "behind it."
        ),
        "prefetch": {PREFETCH_KEY: _prefetch_query(rulebook)},
        "usageRequirements": (
            "EHRs: register as a CDS client (iss and JWK Set) and send a signed JWT as "
            "Authorization: Bearer <JWT> (CDS Hooks 2.0). Others: a clinician API key."
        ),
    }


def _refused() -> ProblemError:
    # One answer for every failed check: nothing that tells a forger which one failed.
    return unauthorized("The token is not valid.", "invalid_token")


def _bearer_jwt() -> str | None:
    """The request's bearer token when it is shaped like a JWT (API keys have no dots)."""
    scheme, token = presented_token()
    return token if scheme == "bearer" and token.count(".") == 2 else None


def _base_url() -> str:
    """``SCREENING_PUBLIC_URL``, or (without it) the address the request came to."""
    return registry.cds().public_url or request.host_url.rstrip("/")


def _check_jwt(token: str) -> CdsClient:
    """The CDS client that signed ``token`` for this URL, else a bare 401."""
    audience = _base_url() + request.path
    try:
        client = registry.cds().verify(token, audience)
    except TokenRefused as exc:
        # The reason, never the token: for the operator, not the caller.
        logger.info("cds: token refused", extra={"reason": str(exc)})
        raise _refused() from None
    g.log_caller = client.iss
    return client


def cds_caller(view: F) -> F:
    """Allow an EHR's signed JWT or a clinician API key; ``g.cds_client`` is the EHR's
    client (None for a key) and ``g.cds_caller`` the name stored with cards and feedback."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = _bearer_jwt()
        client: CdsClient | None
        if token is not None:
            client = _check_jwt(token)
            name = client.iss
        else:
            key = authenticate()
            authorize(key, ("clinician",))
            client, name = None, key.name
        g.cds_client = client
        g.cds_caller = name
        return view(*args, **kwargs)

    return cast(F, wrapped)


@bp.get("")
def discovery() -> Response:
    """CDS Hooks discovery: the one service this server offers."""
    token = _bearer_jwt()
    if token is not None:
        _check_jwt(token)
    return jsonify(services=[_service(registry.rulebook())])


def _served(reference: Any, rulebook: Rulebook) -> bool:
    """Whether a response's ``questionnaire`` names a version of ours that is served."""
    if not isinstance(reference, str):
        return False
    url, _, version = reference.partition("|")
    return rulebook.for_canonical(url, version) is not None


def _latest_response(prefetched: Any, rulebook: Rulebook) -> dict[str, Any] | None:
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


def _detail(result: dict[str, Any]) -> str:
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


def card_for(
    result: dict[str, Any], package: Package, review_url: str, *, stored: bool = False
) -> dict[str, Any]:
    """The one card for a result of ``package``'s rules, linking to ``review_url`` (a
    screening's page when ``stored``, else the list)."""
    ruleset = package.ruleset
    label = (
        "Open the stored screening with these answers"
        if stored
        else "Open the screening review list"
    )
    return {
        "uuid": str(uuid.uuid4()),
        "summary": result["summary"]["clinician"]["card_summary"],
        "indicator": ruleset.outcomes[result["outcome"]].indicator,
        "detail": _detail(result),
        "source": {"label": f"Screening rules {ruleset.id} {ruleset.version}"},
        "links": [{"label": label, "url": review_url, "type": "absolute"}],
    }


def _fetched(body: dict[str, Any], template: str) -> Any:
    """The prefetch query's answer from the EHR's FHIR server (412 when it can't be had)."""
    authorization = body.get("fhirAuthorization")
    if authorization is None:
        logger.info("cds: fetch refused", extra={"reason": "no fhirAuthorization"})
        raise _cannot_fetch()
    patient = quote(body["context"]["patientId"], safe="")
    query = template.replace(PATIENT_PLACEHOLDER, patient)
    try:
        return fetch_resource(
            g.cds_client, body["fhirServer"], authorization["access_token"], query
        )
    except FetchFailed as exc:
        logger.info("cds: fetch failed", extra={"reason": str(exc)})
        raise _cannot_fetch() from None


def _cannot_fetch() -> ProblemError:
    return ProblemError(
        "The FHIR data this service needs was not prefetched and can't be fetched from "
        "the given fhirServer.",
        status=412,
    )


@bp.post(f"/{SERVICE_ID}")
@cds_caller
def patient_view() -> Response:
    """One card for the latest completed response in the prefetch (or fetched from the
    EHR's FHIR server when not prefetched), or none."""
    _, raw = json_object()
    body = schemas.load(schemas.hook_request, raw)
    rulebook = registry.rulebook()
    prefetch = body.get("prefetch") or {}
    where = f"prefetch.{PREFETCH_KEY}"
    prefetched = prefetch.get(PREFETCH_KEY)
    if prefetched is None:
        # Not prefetched (the key left out or null): fetch it, when the EHR says where.
        if body.get("fhirServer") is None:
            return jsonify(cards=[])
        prefetched = _fetched(body, _prefetch_query(rulebook))
        where = f"fhirServer.{PREFETCH_KEY}"
    try:
        latest = _latest_response(prefetched, rulebook)
    except ValidationProblem as exc:
        raise _moved(exc, where) from None
    if latest is None:
        return jsonify(cards=[])
    try:
        # The card is for clinicians: the summary stays in English.
        submission = registry.screenings().check_fhir_submission(
            latest, registry.catalogs()[DEFAULT]
        )
    except ValidationProblem as exc:
        raise _moved(exc, where) from None
    result = submission.result
    cds = registry.cds()
    screening_id = cds.screening_for(submission.answers)
    review_url = _base_url() + "/review/" + (screening_id or "")
    card = card_for(result, submission.package, review_url, stored=screening_id is not None)
    cds.record_card(
        card,
        caller=g.cds_caller,
        hook_instance=body["hookInstance"],
        patient_id=body["context"]["patientId"],
        outcome=result["outcome"],
        screening_id=screening_id,
    )
    return jsonify(cards=[card])


def _moved(exc: ValidationProblem, where: str) -> ValidationProblem:
    """The same problem with its fields named under ``where``."""
    errors = exc.errors or {}
    return ValidationProblem({f"{where}.{key}": messages for key, messages in errors.items()})


@bp.post(f"/{SERVICE_ID}/feedback")
@cds_caller
def feedback() -> Response:
    """CDS Hooks 2.0 feedback on the cards shown: stored and audited, each entry."""
    _, body = json_object()
    rows = schemas.load(schemas.feedback_request, body)["feedback"]
    unknown = registry.cds().record_feedback(g.cds_caller, rows)
    return jsonify(received=len(rows), unknown_cards=unknown)
