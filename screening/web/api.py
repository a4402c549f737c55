"""The ``/v1`` routes. Views are thin: parse, call the service, return."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from screening import extension
from screening.fhir.forms import QuestionnaireResource
from screening.fhir.forms import localized
from screening.fhir.forms import questionnaire_resource
from screening.fhir.results import screening_bundle
from screening.rules.i18n import Catalog
from screening.rules.questionnaire import Questionnaire
from screening.services.problems import ValidationProblem
from screening.services.screenings import Submission
from screening.services.screenings import request_fingerprint
from screening.web import jsonio
from screening.web import schemas
from screening.web import views
from screening.web.auth import current_key
from screening.web.auth import require
from screening.web.bodies import FHIR_JSON
from screening.web.bodies import JSON
from screening.web.bodies import json_object
from screening.web.language import catalog as request_catalog

bp = Blueprint("api", __name__, url_prefix="/v1")

# 1-255 visible ASCII characters (api-v1.md).
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@cache
def _fhir_questionnaire(questionnaire: Questionnaire, catalog: Catalog) -> QuestionnaireResource:
    """The FHIR Questionnaire in the catalog's language, built once per process.

    Both arguments are loaded once at start-up and never change, so the
    document doesn't either.
    """
    resource = questionnaire_resource(questionnaire)
    if catalog.language != "en":
        resource = localized(resource, catalog.language, catalog.texts)
    return resource


def _cacheable(response: Response, etag: str) -> Response:
    """Let clients revalidate data that only changes with a new rules release."""
    response.set_etag(etag)
    response.vary.update(("Accept", "Accept-Language"))
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.make_conditional(request)
    return response


@bp.get("/questionnaire")
def get_questionnaire() -> Response:
    """The questionnaire (``?version=`` for another served version): native JSON in the
    asked language, or a FHIR R4 Questionnaire."""
    package = extension.screenings().questionnaire_package(request.args.get("version"))
    questionnaire = package.questionnaire
    catalog = package.catalogs[request_catalog().language]
    if request.accept_mimetypes.best_match([JSON, FHIR_JSON], default=JSON) == FHIR_JSON:
        response = jsonify(_fhir_questionnaire(questionnaire, catalog))
        response.mimetype = FHIR_JSON
        response.headers["Content-Language"] = catalog.language
        return _cacheable(response, f"{questionnaire.sha256}-fhir-{catalog.language}")
    response = jsonify(catalog.questionnaire_json(questionnaire))
    response.headers["Content-Language"] = catalog.language
    return _cacheable(response, f"{questionnaire.sha256}-{catalog.language}")


@bp.get("/ruleset")
def get_ruleset() -> Response:
    """The default ruleset's id, version, sha256, rules and sources."""
    ruleset = extension.rulebook().ruleset
    return _cacheable(jsonify(ruleset.to_json()), ruleset.sha256)


@bp.get("/rulesets")
def list_rulesets() -> Response:
    """Every loaded rule package: id, version, sha256, status, default, questionnaire, approval."""
    rulebook = extension.rulebook()
    packages = rulebook.sorted_packages()
    items = [package.summary() for package in packages]
    etag = "-".join(f"{p.ruleset.sha256[:16]}{p.status[0]}" for p in packages)
    return _cacheable(jsonify(items=items), etag)


@bp.get("/rulesets/<ruleset_id>/<version>")
def get_one_ruleset(ruleset_id: str, version: str) -> Response:
    """One loaded ruleset as ``GET /v1/ruleset`` shows the default, with status and changelog."""
    package = extension.screenings().package(ruleset_id, version)
    document = {
        **package.ruleset.to_json(),
        "status": package.status,
        "changelog": list(package.changelog),
    }
    return _cacheable(jsonify(document), f"{package.ruleset.sha256}-{package.status}")


def _submission_reader() -> tuple[str, dict[str, object], Callable[[], Submission]]:
    """Read a native or FHIR body; return its kind, the body, and the check to run on it."""
    kind, body = json_object((JSON, FHIR_JSON))
    service = extension.screenings()
    if kind == FHIR_JSON:
        language = body.get("language")
        hint = language if isinstance(language, str) else None
        catalog = request_catalog(hint)
        return kind, body, lambda: service.check_fhir_submission(body, catalog)
    catalog = request_catalog()
    return (
        kind,
        body,
        lambda: service.check_submission(schemas.load(schemas.screening_request, body), catalog),
    )


@bp.post("/evaluate")
@require("portal", "clinician")
def post_evaluate() -> Response:
    """Apply the rules and return the result in the caller's view; store nothing."""
    _, _, check = _submission_reader()
    submission = check()
    key = current_key()
    record = extension.screenings().record(submission, key)
    response = jsonify(views.evaluation_view(record, key.role))
    response.headers["Content-Language"] = _language_of_view(submission.language, key.role)
    return response


def _language_of_view(language: str, role: str) -> str:
    # The portal's view is the patient summary, in the patient's language; a
    # clinician's view is written in English around it.
    return language if role == "portal" else "en"


def _idempotency_key() -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is not None and not _IDEMPOTENCY_KEY.match(value):
        raise ValidationProblem({"Idempotency-Key": ["Must be 1 to 255 visible ASCII characters."]})
    return value


@bp.post("/screenings")
@require("portal", "clinician")
def post_screening() -> Response:
    """Store a screening (once per Idempotency-Key) and return it: 201 with Location."""
    kind, body, check = _submission_reader()
    idempotency_key = _idempotency_key()
    idempotency = (
        None if idempotency_key is None else (idempotency_key, request_fingerprint(kind, body))
    )
    key = current_key()
    created = extension.screenings().create(
        key, check, idempotency, lambda record: jsonio.dumps(views.caller_view(record, key.role))
    )
    response = current_app.response_class(created.body, status=201, mimetype=JSON)
    response.headers["Location"] = f"/v1/screenings/{created.screening_id}"
    response.headers["Content-Language"] = _language_of_view(created.language, key.role)
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/screenings/<screening_id>")
@require("portal", "clinician")
def get_screening(screening_id: str) -> Response:
    """One screening: full view (or a FHIR Bundle) for clinicians, patient view for its portal."""
    key = current_key()
    record = extension.screenings().read(screening_id, key)
    # The FHIR form carries the clinician's findings: only clinicians may choose it.
    offered = [JSON, FHIR_JSON] if key.role == "clinician" else [JSON]
    if request.accept_mimetypes.best_match(offered, default=JSON) == FHIR_JSON:
        # The questionnaire it was answered on (a portal may be pinned to an older one).
        questionnaire = extension.rulebook().questionnaire_of(
            record.questionnaire.id, record.questionnaire.version
        )
        response = jsonify(screening_bundle(record, questionnaire))
        response.mimetype = FHIR_JSON
    else:
        response = jsonify(views.caller_view(record, key.role))
    response.vary.add("Accept")
    response.headers["Content-Language"] = _language_of_view(record.language, key.role)
    return response


@bp.get("/screenings")
@require("clinician")
def list_screenings() -> Response:
    """Clinician list, newest first, filtered, with an opaque cursor."""
    params = schemas.load(schemas.list_query, request.args)
    return jsonify(views.list_view(extension.screenings().list(params, current_key())))


@bp.post("/screenings/<screening_id>/review")
@require("clinician")
def post_review(screening_id: str) -> Response:
    """Mark a screening reviewed, with an optional note."""
    _, body = json_object()
    note = schemas.load(schemas.review_request, body)["note"]
    return jsonify(
        views.full_view(extension.screenings().review(screening_id, note, current_key()))
    )
