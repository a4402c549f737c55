"""The test app: the real rules, the test API keys, a database of either kind."""

from __future__ import annotations

import copy
import functools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask

from screening import PROJECT_ROOT
from screening import create_app
from screening import extension
from screening.services.keys import token_digest
from screening.storage.store import Store
from tests.support.spec import SpecCheckingClient

#: The shipped rules: a folder of rule packages.
RULES_ROOT = PROJECT_ROOT / "rules"
#: The default package (the default questionnaire's default ruleset), a package folder of its own.
RULES_DIR = RULES_ROOT / "lumbar-rfa" / "1.2.0"


POSTGRES_URL = os.environ.get(
    "SCREENING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# CI sets this: there the PostgreSQL tests must run, not skip.
REQUIRE_POSTGRES = os.environ.get("SCREENING_TEST_REQUIRE_POSTGRES") == "1"
TABLES = (
    "audit_log",
    "idempotency_records",
    "reviews",
    "webhook_deliveries",
    "overdue_reviews",
    "overdue_progress",
    "screenings",
    "review_sessions",
    "cds_token_ids",
    "cds_cards",
    "cds_feedback",
)

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


#: Parametrize a test module over both databases: ``pytestmark = BOTH_DATABASES``.
BOTH_DATABASES = pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def app_store(app: Flask) -> Store:
    """The store an app's screening service writes to."""
    return extension.of(app).store


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


@functools.cache
def case_bases(cases_path: Path) -> dict[str, dict[str, Any]]:
    """The answer bases of a cases file, read once per process (parsing the whole file
    for each test that wants a valid submission took 180 ms a time)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    cases = yaml.load(cases_path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    bases: dict[str, dict[str, Any]] = cases["bases"]
    return bases


def base_answers() -> dict[str, Any]:
    """A fresh copy of the complete, valid submission the rule cases start from."""
    return copy.deepcopy(case_bases(RULES_DIR / "cases.yaml")["no_findings"])


def shadow_tree(tmp_path: Path) -> Path:
    """The shipped packages plus lumbar-rfa 1.3.0 in shadow: pain 6 of 10 is now below threshold."""
    tree = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, tree)
    candidate = tree / "lumbar-rfa" / "1.3.0"
    shutil.copytree(tree / "lumbar-rfa" / "1.2.0", candidate)
    package = yaml.safe_load((candidate / "package.yaml").read_text(encoding="utf-8"))
    package.update(status="shadow", default=False)
    (candidate / "package.yaml").write_text(yaml.safe_dump(package), encoding="utf-8")
    for name in ("ruleset.yaml", "i18n/es.yaml"):
        path = candidate / name
        text = path.read_text(encoding="utf-8")
        text = text.replace("version: 1.2.0\ntitle:", "version: 1.3.0\ntitle:")
        text = text.replace(
            "ruleset: {id: lumbar-rfa, version: 1.2.0}", "ruleset: {id: lumbar-rfa, version: 1.3.0}"
        )
        text = text.replace(
            "{item: pain_intensity, less_than: 5}", "{item: pain_intensity, less_than: 7}"
        )
        path.write_text(text, encoding="utf-8")
    # Its cases are not re-stated here: only active packages must pass their own cases.
    return tree


#: The outcome only the fixture package below declares, and its words.
FIFTH_OUTCOME = "physio_first"
FIFTH_LABEL = "Physical therapy first"
FIFTH_PACKAGE = ("lumbar-rfa-physio", "1.0.0")


def fifth_outcome_tree(tmp_path: Path) -> Path:
    """The shipped packages plus lumbar-rfa-physio 1.0.0: lumbar-rfa 1.1.1 with a fifth
    outcome, ``physio_first`` (indicator ``warning``), for people who tried no conservative
    care, and the default package of questionnaire 1.1.0 in lumbar-rfa 1.1.1's place.

    Its outcome is neither the newest default package's nor any shipped package's, so
    whatever takes outcomes from the default package alone fails on it.
    """
    tree = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, tree)
    replaced = tree / "lumbar-rfa" / "1.1.1" / "package.yaml"
    replaced.write_text(
        replaced.read_text(encoding="utf-8").replace("default: true", "default: false"),
        encoding="utf-8",
    )
    ruleset_id, version = FIFTH_PACKAGE
    package = tree / ruleset_id / version
    shutil.copytree(tree / "lumbar-rfa" / "1.1.1", package)
    edits = {
        "ruleset.yaml": [
            ("id: lumbar-rfa\nversion: 1.1.1\n", f"id: {ruleset_id}\nversion: {version}\n"),
            (
                "  - code: discuss_with_specialist\n",
                f"  - code: {FIFTH_OUTCOME}\n    indicator: warning\n"
                f"    label: {FIFTH_LABEL}\n"
                "    headline: Please try physical therapy first.\n"
                "  - code: discuss_with_specialist\n",
            ),
            (
                "              - acupuncture\n    outcome: continue_conservative_care\n",
                f"              - acupuncture\n    outcome: {FIFTH_OUTCOME}\n",
            ),
        ],
        "i18n/es.yaml": [
            (
                "ruleset: {id: lumbar-rfa, version: 1.1.1}",
                f"ruleset: {{id: {ruleset_id}, version: {version}}}",
            ),
            (
                "    discuss_with_specialist: ",
                f"    {FIFTH_OUTCOME}: Por favor, pruebe primero la fisioterapia.\n"
                "    discuss_with_specialist: ",
            ),
        ],
        "cases.yaml": [
            (
                "      outcome: continue_conservative_care\n"
                "      decided_by: no_conservative_care_yet\n",
                f"      outcome: {FIFTH_OUTCOME}\n      decided_by: no_conservative_care_yet\n",
            )
        ],
    }
    for name, changes in edits.items():
        path = package / name
        text = path.read_text(encoding="utf-8")
        for old, new in changes:
            assert old in text, (name, old)
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    release = yaml.safe_load((package / "package.yaml").read_text(encoding="utf-8"))
    release["default"] = True
    release["changelog"] = [
        {"version": version, "date": "2026-12-07", "changes": ["A fifth outcome, for tests."]}
    ]
    (package / "package.yaml").write_text(yaml.safe_dump(release), encoding="utf-8")
    return tree
