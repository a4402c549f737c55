"""The public ``/v1`` routes."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from screening import current

bp = Blueprint("api", __name__, url_prefix="/v1")


def _cacheable(response: Response, etag: str) -> Response:
    """Let clients revalidate data that only changes with a new rules release."""
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = 300
    response.make_conditional(request)
    return response


@bp.get("/questionnaire")
def get_questionnaire() -> Response:
    """The questionnaire: items in display order with types, codes and conditions."""
    questionnaire = current.rulebook().questionnaire
    return _cacheable(jsonify(questionnaire.to_json()), questionnaire.sha256)


@bp.get("/ruleset")
def get_ruleset() -> Response:
    """The ruleset's id, version, sha256, rules and sources."""
    ruleset = current.rulebook().ruleset
    return _cacheable(jsonify(ruleset.to_json()), ruleset.sha256)
