"""Shared fixtures: an app on the real rules, a client whose every response is
checked against openapi.yaml, and a CLI runner."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner

from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import load_rules
from screening.storage.database import make_engine
from screening.storage.migrate import migrate
from screening.storage.store import Store
from tests.support.app import POSTGRES_URL
from tests.support.app import REQUIRE_POSTGRES
from tests.support.app import RULES_DIR
from tests.support.app import TABLES
from tests.support.app import app_store
from tests.support.app import base_answers
from tests.support.app import make_app
from tests.support.markers import set_current


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under ``tests/deployment`` runs the service as it is deployed."""
    deployment = Path(__file__).parent / "deployment"
    for item in items:
        if deployment in item.path.parents:
            item.add_marker(pytest.mark.deployment)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Let the helpers that start servers or browsers see the test's markers."""
    set_current(item)


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
    """A private copy of the default package that a test may break, as one rules folder.

    Without its package.yaml it loads as a rules folder did before packages: the
    only package, active and the default.
    """
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    (target / "package.yaml").unlink()
    yield target


@pytest.fixture
def valid_answers() -> dict[str, Any]:
    """A complete, valid submission that reaches the last decision rule."""
    return base_answers()
