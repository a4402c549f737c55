"""The public routes, and errors as RFC 9457 problems."""

from __future__ import annotations

from flask.testing import FlaskClient

from screening.rules.rulebook import Rulebook


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_questionnaire(client: FlaskClient, rulebook: Rulebook) -> None:
    response = client.get("/v1/questionnaire")
    assert response.status_code == 200
    data = response.get_json()
    assert data == {**rulebook.questionnaire.to_json(), "language": "en"}
    assert [item["linkId"] for item in data["items"]][-1] == "pacemaker_or_implanted_device"
    assert response.headers["ETag"] == f'"{rulebook.questionnaire.sha256}-en"'
    assert response.headers["Content-Language"] == "en"


def test_questionnaire_revalidates_with_etag(client: FlaskClient) -> None:
    etag = client.get("/v1/questionnaire").headers["ETag"]
    again = client.get("/v1/questionnaire", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""


def test_ruleset(client: FlaskClient, rulebook: Rulebook) -> None:
    data = client.get("/v1/ruleset").get_json()
    assert (data["id"], data["version"], data["sha256"]) == (
        "lumbar-rfa",
        "1.2.0",
        rulebook.ruleset.sha256,
    )
    rules = {rule["id"]: rule for rule in data["rules"]}
    assert list(rules)[0] == "cauda_equina_signs"
    assert rules["under_18"] == {
        "id": "under_18",
        "title": "Under 18 years old",
        "kind": "decision",
        "outcome": "see_primary_care",
        "when": {"item": "age_years", "less_than": 18},
        "sources": ["S1"],
    }
    assert rules["pregnancy"]["kind"] == "note" and rules["pregnancy"]["outcome"] is None
    # A note names the outcomes it goes with; a decision rule gives its outcome instead.
    assert rules["pregnancy"]["with_outcomes"] == [
        "continue_conservative_care",
        "discuss_with_specialist",
    ]
    assert rules["pregnancy_tell_staff"]["with_outcomes"] == ["urgent_care", "see_primary_care"]
    assert "with_outcomes" not in rules["under_18"]
    assert [s["id"] for s in data["sources"]][:3] == ["S1", "S2", "S3"]


def test_openapi_document_is_served(client: FlaskClient) -> None:
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.data.startswith(b"openapi: 3.1.0")


def test_unknown_route_is_a_problem(client: FlaskClient) -> None:
    response = client.get("/v1/nothing-here?name=Jane")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Nothing is found at this address.",
    }


def test_wrong_method_is_a_problem(client: FlaskClient) -> None:
    response = client.delete("/v1/questionnaire")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 405
    assert "GET" in response.headers["Allow"]


def test_unhandled_error_is_a_problem_without_internals(client: FlaskClient) -> None:
    app = client.application
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def boom() -> str:
        raise RuntimeError("SELECT secret FROM patients")

    app.add_url_rule("/boom", "boom", boom)
    # A plain client: /boom exists only in this test, not in the spec.
    response = FlaskClient(app, app.response_class).get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    assert "SELECT" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
