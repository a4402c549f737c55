"""openapi.yaml as a test oracle: a test client that checks every response against it."""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any
from weakref import WeakKeyDictionary

import yaml
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_core import Config
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.templating.paths.exceptions import OperationNotFound
from openapi_core.templating.paths.exceptions import PathNotFound
from werkzeug.test import TestResponse

from screening import PROJECT_ROOT
from screening import extension
from screening.web.ops import openapi_document_bytes
from screening.web.ops import served_lists

OPENAPI_PATH = PROJECT_ROOT / "openapi.yaml"

# openapi-core 0.23 parses only application/json as JSON; problem details and
# FHIR resources are JSON too.
_CONFIG = Config(
    extra_media_type_deserializers={
        "application/problem+json": json_loads,
        "application/fhir+json": json_loads,
    }
)
_openapi = OpenAPI.from_file_path(str(OPENAPI_PATH), config=_CONFIG)
_FILE_DIGEST = hashlib.sha256(OPENAPI_PATH.read_bytes()).hexdigest()
#: The document each app serves: the file, its outcome codes those of the app's packages.
_served: WeakKeyDictionary[Flask, OpenAPI] = WeakKeyDictionary()


def served_spec(app: Flask) -> OpenAPI:
    """The OpenAPI document ``app`` serves at /openapi.yaml, parsed once per app."""
    spec = _served.get(app)
    if spec is None:
        with app.app_context():
            lists = served_lists(extension.rulebook())
        data, digest = openapi_document_bytes(app.config["OPENAPI_PATH"], *lists)
        spec = _served[app] = _parsed(data, digest)
    return spec


@cache
def _parsed(data: bytes, digest: str) -> OpenAPI:
    """One parse per document (the suite's apps serve one or two)."""
    if digest == _FILE_DIGEST:
        return _openapi
    return OpenAPI.from_dict(yaml.safe_load(data), config=_CONFIG)


class _AnsweredRequest(WerkzeugOpenAPIRequest):
    """The request a response answered, without its body.

    The app has read the body already (reading it again fails), and checking a
    response needs only the method, path and parameters.
    """

    @property
    def body(self) -> bytes | None:
        """Not kept."""
        return None


def _problem_validator() -> Draft202012Validator:
    """The spec's Problem schema, for responses to paths the spec can't describe."""
    spec = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(spec["components"]["schemas"]["Problem"])


PROBLEM_SCHEMA = _problem_validator()


def check_against_spec(response: TestResponse, spec: OpenAPI = _openapi) -> None:
    """Fail unless ``response`` is exactly what openapi.yaml (or ``spec``) says it can be."""
    if response.request.path.startswith("/review/"):
        # The clinician pages are HTML for people, not part of the JSON API.
        return
    request = _AnsweredRequest(response.request)
    try:
        spec.validate_response(request, WerkzeugOpenAPIResponse(response))
    except (PathNotFound, OperationNotFound):
        # An unknown address or method: Flask's 404 or 405, or the refusals every request
        # may get first (a body over the limit, a used-up rate budget); always a problem.
        assert response.status_code in (404, 405, 413, 429), response.status_code
        assert response.mimetype == "application/problem+json"
        PROBLEM_SCHEMA.validate(response.get_json())


class SpecCheckingClient(FlaskClient):
    """A test client that checks every response against the openapi.yaml its app serves."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        """Send the request, then check the response against the spec."""
        response = super().open(*args, **kwargs)
        check_against_spec(response, served_spec(self.application))
        return response
