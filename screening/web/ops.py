"""Operational routes: liveness and the OpenAPI document."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from screening import extension
from screening.fhir.forms import canonical_reference
from screening.rules.rulebook import Rulebook
from screening.web.errors import problem_response

bp = Blueprint("ops", __name__)

#: The health probes' endpoints: not rate limited, and logged only when they fail.
PROBE_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz"})


@bp.get("/healthz")
def healthz() -> Response:
    """200 while the process serves requests; touches nothing else."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """200 when the database answers and the rules are loaded, else 503."""
    extension.rulebook()
    if not extension.screenings().database_answers():
        # The reason went to the log, never to the caller.
        return problem_response(503, "The database does not answer.")
    return jsonify(status="ready")


#: The lists in openapi.yaml that name what the loaded rule packages hold: the
#: ``OutcomeCode`` enum, and the canonical URLs a FHIR QuestionnaireResponse may name.
_OUTCOME_CODES = re.compile(r"(\n    OutcomeCode:\n      type: string\n      enum: )\[[^\]\n]*\]")
_CANONICALS = re.compile(
    r"(\n    FhirQuestionnaireResponse:\n(?:      .*\n|        .*\n)*?"
    r"        questionnaire:\n(?:          .*\n)*?          enum: )\[[^\]\n]*\]"
)


def served_lists(rulebook: Rulebook) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The outcome codes every loaded package declares, and the canonical URL of each
    served questionnaire version (``url|version``), lowest first."""
    canonicals = tuple(
        canonical_reference(rulebook.for_questionnaire(version).questionnaire)
        for version in rulebook.questionnaire_versions()
    )
    return tuple(rulebook.outcomes), canonicals


@cache
def openapi_document_bytes(
    path: str, outcomes: tuple[str, ...], canonicals: tuple[str, ...]
) -> tuple[bytes, str]:
    """The OpenAPI file's bytes with its lists of outcome codes and canonical URLs naming
    ``outcomes`` and ``canonicals``, and their hash; made once per process and lists.

    The file lists the shipped packages' (api-v1.md); a deployment whose packages declare
    another outcome or serve other questionnaire versions serves a contract that says so,
    so a client generated from what is served reads every outcome and names only a
    questionnaire version the service takes.
    """
    text = Path(path).read_text(encoding="utf-8")
    text = _OUTCOME_CODES.sub(lambda m: f"{m.group(1)}[{', '.join(outcomes)}]", text, count=1)
    quoted = ", ".join(f"'{canonical}'" for canonical in canonicals)
    text = _CANONICALS.sub(lambda m: f"{m.group(1)}[{quoted}]", text, count=1)
    data = text.encode("utf-8")
    return data, hashlib.sha256(data).hexdigest()


@bp.get("/openapi.yaml")
def openapi_document() -> Response:
    """The OpenAPI description of this API, as a file."""
    lists = served_lists(extension.rulebook())
    data, digest = openapi_document_bytes(current_app.config["OPENAPI_PATH"], *lists)
    response = current_app.response_class(data, mimetype="application/yaml")
    response.set_etag(digest)
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.make_conditional(request)
    return response
