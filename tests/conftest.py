"""Shared fixtures: an app on the real rules, a client whose every response is
checked against openapi.yaml, and a CLI runner."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from jsonschema import Draft202012Validator
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound
from openapi_core.templating.paths.exceptions import PathNotFound
from werkzeug.test import TestResponse

from screening import PROJECT_ROOT
from screening import create_app
from screening.loader import Rulebook
from screening.loader import load_rules

RULES_DIR = PROJECT_ROOT / "rules"
OPENAPI_PATH = PROJECT_ROOT / "openapi.yaml"

_openapi = OpenAPI.from_file_path(str(OPENAPI_PATH))


def _problem_validator() -> Draft202012Validator:
    """The spec's Problem schema, for responses to paths the spec can't describe."""
    spec = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(spec["components"]["schemas"]["Problem"])


PROBLEM_SCHEMA = _problem_validator()


def check_against_spec(response: TestResponse) -> None:
    """Fail unless ``response`` is exactly what openapi.yaml says it can be."""
    request = WerkzeugOpenAPIRequest(response.request)
    try:
        _openapi.validate_response(request, WerkzeugOpenAPIResponse(response))
    except (PathNotFound, OperationNotFound):
        # An unknown address or method: Flask's 404 or 405, which must still be a problem.
        assert response.status_code in (404, 405), response.status_code
        assert response.mimetype == "application/problem+json"
        PROBLEM_SCHEMA.validate(response.get_json())


class SpecCheckingClient(FlaskClient):
    """A test client that checks every response against openapi.yaml."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        """Send the request, then check the response against the spec."""
        response = super().open(*args, **kwargs)
        check_against_spec(response)
        return response


@pytest.fixture
def app() -> Flask:
    """The app with the real rules."""
    app = create_app({"TESTING": True})
    app.test_client_class = SpecCheckingClient
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client whose responses are checked against openapi.yaml."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """A runner for the app's Flask commands."""
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def rulebook() -> Rulebook:
    """The real questionnaire and ruleset, loaded once."""
    return load_rules(RULES_DIR)


@pytest.fixture
def rules_copy(tmp_path: Path) -> Iterator[Path]:
    """A private copy of rules/ that a test may break."""
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    yield target


def base_answers() -> dict[str, Any]:
    """A fresh copy of the complete, valid submission the rule cases start from."""
    cases = yaml.safe_load((RULES_DIR / "cases.yaml").read_text(encoding="utf-8"))
    return dict(cases["bases"]["no_findings"])


@pytest.fixture
def valid_answers() -> dict[str, Any]:
    """A complete, valid submission that reaches the last decision rule."""
    return base_answers()
