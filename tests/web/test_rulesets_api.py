"""Choosing a questionnaire and ruleset: ?version=, the ruleset field, /v1/rulesets, retirement."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient

from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import load_rules
from tests.support.app import RULES_ROOT
from tests.support.app import bearer
from tests.support.app import make_app

Q = "lumbar-rfa-screening"
SHIPPED = load_rules(RULES_ROOT)


def _post(client: FlaskClient, path: str, body: dict[str, Any], who: str = "dr-c") -> Any:
    return client.post(path, json=body, headers=bearer(who))


def _edit_yaml(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_questionnaire_default_and_by_version(client: FlaskClient) -> None:
    assert client.get("/v1/questionnaire").get_json()["version"] == "1.2.0"
    older = client.get("/v1/questionnaire?version=1.0.0")
    assert older.status_code == 200
    data = older.get_json()
    assert data["version"] == "1.0.0"
    assert "second_block_relief_percent" not in {item["linkId"] for item in data["items"]}
    fhir_json = {"Accept": "application/fhir+json"}
    fhir = client.get("/v1/questionnaire?version=1.0.0", headers=fhir_json)
    assert fhir.get_json()["version"] == "1.0.0"
    spanish = client.get("/v1/questionnaire?version=1.0.0&lang=es").get_json()
    assert (spanish["version"], spanish["language"]) == ("1.0.0", "es")


def test_unknown_questionnaire_version_is_404_naming_it(client: FlaskClient) -> None:
    response = client.get("/v1/questionnaire?version=9.9.9")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert "9.9.9" in response.get_json()["detail"]
    assert list(response.get_json()["errors"]) == ["version"]


def test_rulesets_lists_every_package(client: FlaskClient) -> None:
    items = client.get("/v1/rulesets").get_json()["items"]
    by_key = {(i["id"], i["version"]): i for i in items}
    assert by_key[("lumbar-rfa", "1.2.0")]["default"] is True
    assert by_key[("lumbar-rfa", "1.1.1")]["questionnaire"] == {"id": Q, "version": "1.1.0"}
    assert by_key[("lumbar-rfa", "1.0.0")]["status"] == "retired"
    assert by_key[("lumbar-rfa", "1.0.0")]["approved_on"] == "2026-01-15"
    assert by_key[("lumbar-rfa", "1.0.1")]["status"] == "active"
    assert len(items) == len(SHIPPED.packages)


def test_one_ruleset_with_status_and_changelog(client: FlaskClient) -> None:
    data = client.get("/v1/rulesets/lumbar-rfa/1.0.1").get_json()
    assert (data["id"], data["version"], data["status"]) == ("lumbar-rfa", "1.0.1", "active")
    assert [entry["version"] for entry in data["changelog"]] == ["1.0.1", "1.0.0"]
    assert data["questionnaire"] == {"id": Q, "version": "1.0.0"}
    assert client.get("/v1/rulesets/lumbar-rfa/9.9.9").status_code == 404
    assert client.get("/v1/rulesets/nothing/1.0.0").status_code == 404


def test_ruleset_keeps_showing_the_default(client: FlaskClient, rulebook: Rulebook) -> None:
    assert client.get("/v1/ruleset").get_json()["version"] == "1.2.0"


def test_a_portal_pinned_to_the_old_questionnaire_keeps_working(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers, "questionnaire": {"id": Q, "version": "1.0.0"}}
    response = _post(client, "/v1/screenings", body, who="portal-a")
    assert response.status_code == 201
    data = response.get_json()
    assert data["questionnaire"] == {"id": Q, "version": "1.0.0"}
    assert (data["ruleset"]["id"], data["ruleset"]["version"]) == ("lumbar-rfa", "1.0.1")
    # An item only 1.1.0 asks is unknown to 1.0.0.
    body["answers"] = {**valid_answers, "second_block_relief_percent": 10}
    response = _post(client, "/v1/evaluate", body)
    assert response.status_code == 422
    assert "second_block_relief_percent" in response.get_json()["errors"]


def test_the_default_is_used_when_nothing_is_named(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    data = _post(client, "/v1/evaluate", {"answers": valid_answers}).get_json()
    assert data["questionnaire"] == {"id": Q, "version": "1.2.0"}
    assert data["ruleset"]["version"] == "1.2.0"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"ruleset": {"id": "nothing"}}, "ruleset"),
        ({"ruleset": {"id": "lumbar-rfa", "version": "0.1.0"}}, "ruleset"),
        (
            {
                "ruleset": {"id": "lumbar-rfa", "version": "1.0.1"},
                "questionnaire": {"id": Q, "version": "1.1.0"},
            },
            "ruleset",
        ),
        ({"questionnaire": {"id": Q, "version": "0.1.0"}}, "questionnaire"),
        ({"ruleset": {"version": "1.0.0"}}, "ruleset.id"),
        ({"ruleset": {"id": "lumbar-rfa", "colour": "red"}}, "ruleset.colour"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/evaluate", "/v1/screenings"])
def test_unusable_choices_are_422_naming_the_field(
    client: FlaskClient, valid_answers: dict[str, Any], extra: dict[str, Any], field: str, path: str
) -> None:
    response = _post(client, path, {"answers": valid_answers, **extra})
    assert response.status_code == 422, response.get_json()
    assert list(response.get_json()["errors"]) == [field]


def test_a_named_ruleset_without_version_takes_the_highest_active_for_the_questionnaire(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    body = {
        "answers": valid_answers,
        "ruleset": {"id": "lumbar-rfa"},
        "questionnaire": {"id": Q, "version": "1.0.0"},
    }
    assert _post(client, "/v1/evaluate", body).get_json()["ruleset"]["version"] == "1.0.1"
    body = {"answers": valid_answers, "ruleset": {"id": "lumbar-rfa", "version": "1.0.1"}}
    data = _post(client, "/v1/evaluate", body).get_json()
    assert data["questionnaire"] == {"id": Q, "version": "1.0.0"}


@pytest.mark.parametrize("path", ["/v1/evaluate", "/v1/screenings"])
def test_the_cms_profile_gives_its_own_outcome_on_the_same_answers(
    client: FlaskClient, valid_answers: dict[str, Any], path: str
) -> None:
    # One block with 60% relief: positive by NICE (50%), under LCD L38773's 80%.
    answers = {**valid_answers, "medial_branch_block": "yes_once", "block_relief_percent": 60}
    answers.pop("second_block_relief_percent", None)
    answers["pain_interference"] = 7
    default = _post(client, path, {"answers": answers}).get_json()
    cms = _post(client, path, {"answers": answers, "ruleset": {"id": "lumbar-rfa-cms"}})
    assert cms.status_code in (200, 201), cms.get_json()
    profile = cms.get_json()
    assert default["decided_by"] == "positive_block"
    assert (profile["ruleset"]["id"], profile["ruleset"]["version"]) == ("lumbar-rfa-cms", "1.1.0")
    assert profile["questionnaire"] == {"id": Q, "version": "1.2.0"}
    assert profile["decided_by"] == "block_under_80_percent"
    # Little interference with daily tasks: no functional deficit, so not yet under the LCD.
    answers["pain_interference"] = 3
    default = _post(client, path, {"answers": answers}).get_json()
    body = {"answers": answers, "ruleset": {"id": "lumbar-rfa-cms"}}
    profile = _post(client, path, body).get_json()
    assert default["outcome"] == "discuss_with_specialist"
    assert profile["outcome"] == "continue_conservative_care"
    assert profile["decided_by"] == "no_functional_deficit"
    # The profile has no version for questionnaire 1.0.0.
    body["questionnaire"] = {"id": Q, "version": "1.0.0"}
    refused = _post(client, path, body)
    assert refused.status_code == 422
    assert list(refused.get_json()["errors"]) == ["ruleset"]


def _retire_1_0_1(tmp_path: Path) -> Path:
    tree = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, tree)
    _edit_yaml(
        tree / "lumbar-rfa" / "1.0.1" / "package.yaml",
        lambda d: d.update(status="retired", default=False),
    )
    return tree


def test_an_old_screening_stays_readable_after_its_package_is_retired(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers, "questionnaire": {"id": Q, "version": "1.0.0"}}
    with make_app(database_url) as app:
        created = _post(app.test_client(), "/v1/screenings", body).get_json()
    with make_app(database_url, RULES_DIR=str(_retire_1_0_1(tmp_path))) as app:
        client = app.test_client()
        response = client.get(f"/v1/screenings/{created['id']}", headers=bearer("dr-c"))
        assert response.status_code == 200
        assert response.get_json()["ruleset"] == created["ruleset"]
        assert response.get_json()["summary"] == created["summary"]
        refused = _post(client, "/v1/evaluate", body)
        assert list(refused.get_json()["errors"]) == ["questionnaire"]
        named = {"answers": valid_answers, "ruleset": {"id": "lumbar-rfa", "version": "1.0.1"}}
        refused = _post(client, "/v1/evaluate", named)
        assert "retired" in refused.get_json()["errors"]["ruleset"][0]
        listed = client.get("/v1/rulesets").get_json()["items"]
        assert {"lumbar-rfa 1.0.1 retired"} <= {
            f"{i['id']} {i['version']} {i['status']}" for i in listed
        }


def test_the_list_filters_by_ruleset_and_version(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    older = {"answers": valid_answers, "questionnaire": {"id": Q, "version": "1.0.0"}}
    cms = {"answers": valid_answers, "ruleset": {"id": "lumbar-rfa-cms"}}
    made = {
        name: _post(client, "/v1/screenings", body).get_json()["id"]
        for name, body in [("default", {"answers": valid_answers}), ("older", older), ("cms", cms)]
    }

    def listed(query: str) -> set[str]:
        response = client.get(f"/v1/screenings?{query}", headers=bearer("dr-c"))
        assert response.status_code == 200, response.get_json()
        return {item["id"] for item in response.get_json()["items"]}

    assert listed("ruleset=lumbar-rfa") == {made["default"], made["older"]}
    assert listed("ruleset=lumbar-rfa&ruleset_version=1.0.1") == {made["older"]}
    assert listed("ruleset=lumbar-rfa-cms") == {made["cms"]}
    assert listed("ruleset=lumbar-rfa-cms&outcome=urgent_care") == set()
    assert listed("") == set(made.values())


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("ruleset=nothing", "ruleset"),
        ("ruleset=lumbar-rfa&ruleset_version=9.9.9", "ruleset_version"),
        ("ruleset_version=1.0.0", "ruleset_version"),
        ("ruleset=" + "x" * 65, "ruleset"),
    ],
)
def test_an_unusable_ruleset_filter_is_422_naming_it(
    client: FlaskClient, query: str, field: str
) -> None:
    response = client.get(f"/v1/screenings?{query}", headers=bearer("dr-c"))
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert list(response.get_json()["errors"]) == [field]


def test_screenings_of_rules_no_longer_loaded_can_still_be_listed(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers, "ruleset": {"id": "lumbar-rfa-cms"}}
    with make_app(database_url) as app:
        stored = _post(app.test_client(), "/v1/screenings", body).get_json()["id"]
    tree = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, tree)
    shutil.rmtree(tree / "lumbar-rfa-cms")
    with make_app(database_url, RULES_DIR=str(tree)) as app:
        client = app.test_client()
        for query in ("ruleset=lumbar-rfa-cms", "ruleset=lumbar-rfa-cms&ruleset_version=1.1.0"):
            response = client.get(f"/v1/screenings?{query}", headers=bearer("dr-c"))
            assert response.status_code == 200, response.get_json()
            assert [item["id"] for item in response.get_json()["items"]] == [stored]
        for query in ("ruleset=lumbar-rfa-cms&ruleset_version=9.9.9", "ruleset=nothing"):
            refused = client.get(f"/v1/screenings?{query}", headers=bearer("dr-c"))
            assert refused.status_code == 422
