"""The safety update as portals and clinicians meet it (clinical-safety-v1.md, "Done when").

Portals pinned to questionnaires 1.0.0 and 1.1.0 get the patched packages without
changing a request; a screening decided before the update keeps its own words.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from tests.support.app import RULES_ROOT
from tests.support.app import TOKENS
from tests.support.app import bearer
from tests.support.app import make_app

Q = "lumbar-rfa-screening"
#: The packages the safety update added: without them, the rules as they were before it.
ADDED = [
    "lumbar-rfa/1.0.1",
    "lumbar-rfa/1.1.1",
    "lumbar-rfa/1.2.0",
    "lumbar-rfa-cms/1.0.1",
    "lumbar-rfa-cms/1.1.0",
]
#: The packages it retired, and how they were before.
RETIRED = {
    "lumbar-rfa/1.0.0": {"status": "active", "default": True},
    "lumbar-rfa/1.1.0": {"status": "active", "default": True},
    "lumbar-rfa-cms/1.0.0": {"status": "active", "default": False},
}


def rules_before_the_update(tmp_path: Path) -> Path:
    """A copy of rules/ as it was before the safety update."""
    tree = tmp_path / "before"
    shutil.copytree(RULES_ROOT, tree)
    for folder in ADDED:
        shutil.rmtree(tree / folder)
    for folder, state in RETIRED.items():
        path = tree / folder / "package.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data.update(state)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return tree


def _evaluate(client: FlaskClient, body: dict[str, Any], who: str = "portal-a") -> Any:
    response = client.post("/v1/evaluate", json=body, headers=bearer(who))
    return response


@pytest.mark.parametrize(
    ("named", "ruleset"),
    [
        ({"questionnaire": {"id": Q, "version": "1.0.0"}}, ("lumbar-rfa", "1.0.1")),
        ({"questionnaire": {"id": Q, "version": "1.1.0"}}, ("lumbar-rfa", "1.1.1")),
        (
            {"questionnaire": {"id": Q, "version": "1.1.0"}, "ruleset": {"id": "lumbar-rfa-cms"}},
            ("lumbar-rfa-cms", "1.0.1"),
        ),
        ({}, ("lumbar-rfa", "1.2.0")),
        ({"ruleset": {"id": "lumbar-rfa-cms"}}, ("lumbar-rfa-cms", "1.1.0")),
    ],
)
def test_portals_pinned_to_earlier_questionnaires_get_the_patched_packages(
    client: FlaskClient,
    valid_answers: dict[str, Any],
    named: dict[str, Any],
    ruleset: tuple[str, str],
) -> None:
    # The same request a portal sent before the update: a crash years ago, pain for a year.
    answers = {**valid_answers, "rf_major_trauma": True}
    if "questionnaire" not in named:
        answers["major_trauma_when"] = "longer_ago"
    response = _evaluate(client, {"answers": answers, **named})
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert (result["ruleset"]["id"], result["ruleset"]["version"]) == ruleset
    assert result["questionnaire"]["version"] == named.get("questionnaire", {}).get(
        "version", "1.2.0"
    )
    # Not the emergency room today: the person's own doctor first.
    assert result["outcome"] == "see_primary_care"


def test_a_request_naming_a_retired_version_is_told_so(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    body = {
        "answers": valid_answers,
        "questionnaire": {"id": Q, "version": "1.1.0"},
        "ruleset": {"id": "lumbar-rfa", "version": "1.1.0"},
    }
    response = _evaluate(client, body)
    assert response.status_code == 422
    assert "retired" in response.get_json()["errors"]["ruleset"][0]


def test_a_screening_decided_before_the_update_reads_with_its_own_words(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    # A negative block, stored under lumbar-rfa 1.1.0 before the update.
    answers = {**valid_answers, "medial_branch_block": "yes_once", "block_relief_percent": 30}
    body = {"answers": answers, "questionnaire": {"id": Q, "version": "1.1.0"}}
    with make_app(database_url, RULES_DIR=str(rules_before_the_update(tmp_path))) as app:
        before = app.test_client().post("/v1/screenings", json=body, headers=bearer("dr-c"))
        assert before.status_code == 201
        stored = before.get_json()
    assert stored["ruleset"]["version"] == "1.1.0"
    old_label = "May discuss RF denervation with a spine specialist"
    assert stored["summary"]["clinician"]["outcome_label"] == old_label

    with make_app(database_url) as app:
        client = app.test_client()
        read = client.get(f"/v1/screenings/{stored['id']}", headers=bearer("dr-c")).get_json()
        # Never recomputed: the words it was decided with, under its own ruleset.
        assert read["ruleset"] == stored["ruleset"]
        assert read["summary"] == stored["summary"]
        assert read["decided_by"] == "negative_block"
        # The same answers today, on the same questionnaire, get the patched words.
        today = _evaluate(client, body, who="dr-c").get_json()
        assert today["ruleset"]["version"] == "1.1.1"
        assert today["summary"]["clinician"]["outcome_label"] == "Discuss with a spine specialist"
        assert "RF denervation" not in today["summary"]["clinician"]["card_summary"]
        # The review page names its rules, now retired, in their own words.
        reviewer = FlaskClient(app, use_cookies=True)
        login = reviewer.get("/review/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
        assert csrf is not None
        signed_in = reviewer.post(
            "/review/login", data={"token": TOKENS["dr-c"], "csrf_token": csrf.group(1)}
        )
        assert signed_in.status_code == 303
        page = reviewer.get(f"/review/{stored['id']}").text
        assert old_label in page
        assert "(lumbar-rfa version 1.1.0) are now retired" in page
