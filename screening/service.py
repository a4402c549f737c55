"""Submitting, reading, listing and reviewing screenings: the steps between view and store.

Each function takes what a view parsed and returns what the view sends back;
none of them knows about HTTP beyond the problem errors it raises.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

from marshmallow import ValidationError

from screening import jsonio
from screening import schemas
from screening.auth import ApiKey
from screening.engine import evaluate
from screening.errors import ProblemError
from screening.errors import ValidationProblem
from screening.fhir import answers_from_questionnaire_response
from screening.i18n import Catalog
from screening.loader import Rulebook
from screening.observability import record_outcome
from screening.store import ClaimLost
from screening.store import CursorError
from screening.store import ListFilters
from screening.store import Store
from screening.store import decode_cursor
from screening.store import encode_cursor
from screening.views import evaluation_view
from screening.views import full_view
from screening.views import list_item_view
from screening.views import patient_view


@dataclass(frozen=True, slots=True)
class Submission:
    """A request body that passed every check, and its result."""

    answers: dict[str, Any]
    patient_ref: str | None
    result: dict[str, Any]
    language: str = "en"
    source: dict[str, Any] | None = None


def _load(schema: Any, data: Any) -> dict[str, Any]:
    try:
        return dict(schema.load(data))
    except ValidationError as exc:
        raise ValidationProblem(schemas.messages_by_field(exc.messages)) from None


def _submission(
    answers: dict[str, Any],
    patient_ref: str | None,
    rulebook: Rulebook,
    catalog: Catalog,
    source: dict[str, Any] | None = None,
) -> Submission:
    """Apply the rules; the patient summary is kept in the language it is read in."""
    result = evaluate(answers, rulebook.ruleset)
    if catalog.language != "en":
        summary = result["summary"]
        summary["patient"] = catalog.patient_summary(
            summary["patient"], result["decided_by"], result["matched_rules"]
        )
    return Submission(answers, patient_ref, result, catalog.language, source)


def check_submission(body: Any, rulebook: Rulebook, catalog: Catalog) -> Submission:
    """Check the envelope and the answers, then apply the rules."""
    envelope = _load(schemas.screening_request, body)
    questionnaire = rulebook.questionnaire
    ref = envelope["questionnaire"]
    if ref is not None and (ref["id"], ref["version"]) != (questionnaire.id, questionnaire.version):
        raise ValidationProblem(
            {"questionnaire": [f"Must be {questionnaire.id} version {questionnaire.version}."]}
        )
    answers, errors = questionnaire.validate(envelope["answers"])
    if errors:
        # Answer problems are keyed by linkId; a non-object is keyed "answers".
        raise ValidationProblem(errors)
    return _submission(answers, envelope["patient_ref"], rulebook, catalog)


def check_fhir_submission(
    resource: dict[str, Any], rulebook: Rulebook, catalog: Catalog
) -> Submission:
    """Read a FHIR QuestionnaireResponse, check its answers as native ones, apply the rules."""
    questionnaire = rulebook.questionnaire
    answers, errors = answers_from_questionnaire_response(resource, questionnaire)
    if errors:
        # Reported alone: an item left out for a FHIR error would otherwise also
        # be called missing, or make a later item look wrongly asked.
        raise ValidationProblem(errors)
    clean, errors = questionnaire.validate(answers)
    if errors:
        raise ValidationProblem(errors)
    return _submission(clean, None, rulebook, catalog, source=resource)


def _record(submission: Submission, rulebook: Rulebook, key: ApiKey) -> dict[str, Any]:
    questionnaire, ruleset = rulebook.questionnaire, rulebook.ruleset
    return {
        "id": secrets.token_hex(16),
        "created_at": datetime.now(UTC),
        "created_by": key.name,
        "patient_ref": submission.patient_ref,
        "language": submission.language,
        "questionnaire_id": questionnaire.id,
        "questionnaire_version": questionnaire.version,
        "questionnaire_sha256": questionnaire.sha256,
        "ruleset_id": ruleset.id,
        "ruleset_version": ruleset.version,
        "ruleset_sha256": ruleset.sha256,
        "outcome": submission.result["outcome"],
        "review_status": "pending",
        "answers": submission.answers,
        "result": {k: v for k, v in submission.result.items() if k != "ruleset"},
        "source": submission.source,
    }


def caller_view(record: dict[str, Any], key: ApiKey) -> dict[str, Any]:
    """The screening as this caller may see it."""
    return full_view(record) if key.role == "clinician" else patient_view(record)


def evaluate_only(submission: Submission, rulebook: Rulebook, key: ApiKey) -> dict[str, Any]:
    """``POST /v1/evaluate``: the result in the caller's view, nothing stored."""
    return evaluation_view(_record(submission, rulebook, key), key.role)


def request_fingerprint(kind: str, body: Any) -> str:
    """A hash of what was asked, to tell a true retry from a reused key."""
    canonical = json.dumps([kind, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Created:
    """A screening response: new (201) or replayed from an Idempotency-Key."""

    screening_id: str
    body: str
    language: str
    replayed: bool = False


def create_screening(
    store: Store,
    rulebook: Rulebook,
    key: ApiKey,
    check: Callable[[], Submission],
    idempotency: tuple[str, str] | None,
) -> Created:
    """Store a screening; ``check()`` builds the Submission.

    With ``idempotency`` (the Idempotency-Key and the request's fingerprint), a
    repeat replays the first response and stores nothing new.
    """
    scope = None
    if idempotency is not None:
        idempotency_key, fingerprint = idempotency
        claim = store.claim_idempotency(key.name, idempotency_key, fingerprint)
        if claim.state == "mismatch":
            raise ValidationProblem(
                {"Idempotency-Key": ["Already used with a different request body."]},
                "This Idempotency-Key was used with a different request body.",
            )
        if claim.state == "in_flight":
            raise _in_flight()
        if claim.state == "replay":
            assert claim.response_body is not None
            screening_id = jsonio.loads(claim.response_body)["id"]
            stored = store.get_screening(screening_id)
            language = stored["language"] if stored is not None else "en"
            return Created(screening_id, claim.response_body, language, replayed=True)
        assert claim.token is not None
        scope = (key.name, idempotency_key, claim.token)
    try:
        record = _record(check(), rulebook, key)
        body = jsonio.dumps(caller_view(record, key))
        store.insert_screening(record, idempotency=scope, response=(201, body))
    except ClaimLost:
        # A retry took this stalled request's claim over and now answers for the key.
        raise _in_flight() from None
    except BaseException:
        # Free the key so a corrected retry runs afresh (only if this request still holds it).
        if scope is not None:
            store.release_idempotency(*scope)
        raise
    record_outcome(record["outcome"])
    return Created(record["id"], body, record["language"])


def _in_flight() -> ProblemError:
    return ProblemError(
        "A request with this Idempotency-Key is still being processed. Retry shortly.",
        status=409,
        headers={"Retry-After": "1"},
    )


def _may_exist(screening_id: str) -> bool:
    # Ids are printable ASCII (hex); anything else names no screening, and a NUL
    # would make PostgreSQL fail the query instead.
    return screening_id.isascii() and screening_id.isprintable()


def read_screening(store: Store, screening_id: str, key: ApiKey) -> tuple[dict[str, Any], str]:
    """One screening in the caller's view, and the language it was answered in.

    404 for a portal key that did not create it.
    """
    record = store.get_screening(screening_id) if _may_exist(screening_id) else None
    if record is None or (key.role == "portal" and record["created_by"] != key.name):
        raise ProblemError("There is no screening with this id.", status=404)
    store.audit(key.name, "read", [screening_id])
    return caller_view(record, key), record["language"]


def list_screenings(store: Store, rulebook: Rulebook, query: Any, key: ApiKey) -> dict[str, Any]:
    """A page of the clinician list, newest first, with the next cursor."""
    params = _load(schemas.list_query, query)
    outcomes = rulebook.ruleset.outcomes
    if params["outcome"] is not None and params["outcome"] not in outcomes:
        raise ValidationProblem({"outcome": [f"Must be one of: {', '.join(outcomes)}."]})
    after = None
    if params["cursor"] is not None:
        try:
            after = decode_cursor(params["cursor"])
        except CursorError:
            raise ValidationProblem({"cursor": ["Not a cursor from this list."]}) from None
    if (
        params["created_from"] is not None
        and params["created_to"] is not None
        and params["created_from"] > params["created_to"]
    ):
        raise ValidationProblem({"created_to": ["Must not be before created_from."]})
    filters = ListFilters(
        outcome=params["outcome"],
        review_status=params["review_status"],
        patient_ref=params["patient_ref"],
        created_from=params["created_from"],
        created_to=params["created_to"],
    )
    rows, next_position = store.list_screenings(filters, params["limit"], after)
    store.audit(key.name, "list", [row["id"] for row in rows])
    return {
        "items": [list_item_view(row) for row in rows],
        "next_cursor": None if next_position is None else encode_cursor(*next_position),
    }


def review_screening(store: Store, screening_id: str, body: Any, key: ApiKey) -> dict[str, Any]:
    """Mark a screening reviewed with an optional note; return the full view."""
    params = _load(schemas.review_request, body)
    if not _may_exist(screening_id) or not store.add_review(screening_id, key.name, params["note"]):
        raise ProblemError("There is no screening with this id.", status=404)
    record = store.get_screening(screening_id)
    assert record is not None
    return full_view(record)
