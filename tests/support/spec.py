"""openapi.yaml as a test oracle: a test client that checks every response against it."""

from __future__ import annotations

from typing import Any

import yaml
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

OPENAPI_PATH = PROJECT_ROOT / "openapi.yaml"

# openapi-core 0.23 parses only application/json as JSON; problem details and
# FHIR resources are JSON too.
_openapi = OpenAPI.from_file_path(
    str(OPENAPI_PATH),
    config=Config(
        extra_media_type_deserializers={
            "application/problem+json": json_loads,
            "application/fhir+json": json_loads,
        }
    ),
)


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


def check_against_spec(response: TestResponse) -> None:
    """Fail unless ``response`` is exactly what openapi.yaml says it can be."""
    if response.request.path.startswith("/review/"):
        # The clinician pages are HTML for people, not part of the JSON API.
        return
    request = _AnsweredRequest(response.request)
    try:
        _openapi.validate_response(request, WerkzeugOpenAPIResponse(response))
    except (PathNotFound, OperationNotFound):
        # An unknown address or method: Flask's 404 or 405, or the refusals every request
        # may get first (a body over the limit, a used-up rate budget); always a problem.
        assert response.status_code in (404, 405, 413, 429), response.status_code
        assert response.mimetype == "application/problem+json"
        PROBLEM_SCHEMA.validate(response.get_json())


class SpecCheckingClient(FlaskClient):
    """A test client that checks every response against openapi.yaml."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        """Send the request, then check the response against the spec."""
        response = super().open(*args, **kwargs)
        check_against_spec(response)
        return response
