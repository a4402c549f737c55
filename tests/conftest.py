"""Shared fixtures: an app on the real rules, a client whose every response is
checked against openapi.yaml, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
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
from screening import create_app
from screening.rules.loader import Rulebook
from screening.rules.loader import load_rules
from screening.services.keys import token_digest
from screening.services.registry import SCREENINGS_EXTENSION
from screening.storage.migrate import migrate
from screening.storage.store import Store
from screening.storage.store import make_engine

RULES_DIR = PROJECT_ROOT / "rules"
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


POSTGRES_URL = os.environ.get(
    "SCREENING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# CI sets this: there the PostgreSQL tests must run, not skip.
REQUIRE_POSTGRES = os.environ.get("SCREENING_TEST_REQUIRE_POSTGRES") == "1"
TABLES = ("audit_log", "idempotency_records", "reviews", "screenings")

TOKENS = {"portal-a": "portal-a-token", "portal-b": "portal-b-token", "dr-c": "clinician-token"}
API_KEYS = ",".join(
    [
        f"portal-a:portal:{token_digest(TOKENS['portal-a'])}",
        f"portal-b:portal:{token_digest(TOKENS['portal-b'])}",
        f"dr-c:clinician:{token_digest(TOKENS['dr-c'])}",
    ]
)


#: Signs the review pages' session cookies in tests.
SECRET_KEY = "test-secret-key-for-signed-cookies-0123456789"


def bearer(name: str) -> dict[str, str]:
    """The Authorization header of one of the test keys."""
    return {"Authorization": f"Bearer {TOKENS[name]}"}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "screening.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private schema in the test PostgreSQL database, migrated once."""
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError:
        admin.dispose()
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required here but {POSTGRES_URL} does not answer")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} does not answer")
    schema = f"screening_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    engine = make_engine(rendered)
    migrate(engine)
    engine.dispose()
    yield rendered
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database kind: "sqlite" unless a test is parametrized with ``backend``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A fresh, migrated, empty database of the chosen kind."""
    if backend == "sqlite":
        path = tmp_path / "screening.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = str(request.getfixturevalue("postgres_url"))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


#: Parametrize a test module over both databases: ``pytestmark = BOTH_DATABASES``.
BOTH_DATABASES = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def app_store(app: Flask) -> Store:
    """The store an app's screening service writes to."""
    return app.extensions[SCREENINGS_EXTENSION].store  # type: ignore[no-any-return]


@contextmanager
def make_app(database_url: str, **config: Any) -> Iterator[Flask]:
    """An app with the real rules, the test keys and ``config`` on ``database_url``.

    Rate limiting is off unless ``config`` sets it; the engine is disposed on exit.
    """
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "API_KEYS": API_KEYS,
            "RATE_LIMIT": "",
            "SECRET_KEY": SECRET_KEY,
            **config,
        }
    )
    app.test_client_class = SpecCheckingClient
    try:
        yield app
    finally:
        app_store(app).engine.dispose()


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    """The app with the real rules, test keys and a fresh database."""
    with make_app(database_url) as app:
        yield app


@pytest.fixture
def store(app: Flask) -> Store:
    """The app's store, for looking behind the API."""
    return app_store(app)


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
