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

from screening.services import registry
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
    registry.rulebook()
    if not registry.screenings().database_answers():
        # The reason went to the log, never to the caller.
        return problem_response(503, "The database does not answer.")
    return jsonify(status="ready")


#: The ``OutcomeCode`` enum in openapi.yaml, whose codes are those the loaded packages declare.
_OUTCOME_CODES = re.compile(r"(\n    OutcomeCode:\n      type: string\n      enum: )\[[^\]\n]*\]")


@cache
def openapi_document_bytes(path: str, outcomes: tuple[str, ...]) -> tuple[bytes, str]:
    """The OpenAPI file's bytes, its ``OutcomeCode`` enum naming ``outcomes``, and their
    hash; made once per process and set of codes.

    The file lists the shipped packages' four codes (api-v1.md); a deployment whose rule
    packages declare another serves a contract that admits it, so a client generated from
    what is served reads every outcome the service can give.
    """
    text = Path(path).read_text(encoding="utf-8")
    text = _OUTCOME_CODES.sub(lambda m: f"{m.group(1)}[{', '.join(outcomes)}]", text, count=1)
    data = text.encode("utf-8")
    return data, hashlib.sha256(data).hexdigest()


@bp.get("/openapi.yaml")
def openapi_document() -> Response:
    """The OpenAPI description of this API, as a file."""
    outcomes = tuple(registry.rulebook().outcomes)
    data, digest = openapi_document_bytes(current_app.config["OPENAPI_PATH"], outcomes)
    response = current_app.response_class(data, mimetype="application/yaml")
    response.set_etag(digest)
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.make_conditional(request)
    return response
