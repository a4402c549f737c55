"""The screening routes on SQLite and PostgreSQL: roles, views, errors, audit."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from screening import extension
from screening.storage.lists import ListFilters
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import bearer

pytestmark = BOTH_DATABASES

# Exactly api-v1.md's patient view.
PATIENT_VIEW = {"id", "created_at", "questionnaire", "ruleset", "outcome", "summary"}
FULL_VIEW = PATIENT_VIEW | {
    "patient_ref",
    "language",
    "answers",
    "decided_by",
    "matched_rules",
    "trace",
    "review",
    # rules-lifecycle-v1.md: what each shadow package would decide; clinicians only.
    "shadow",
}


def submit(
    client: FlaskClient, answers: dict[str, Any], who: str = "portal-a", **extra: Any
) -> Any:
    """POST a screening as ``who``."""
    headers = bearer(who)
    headers.update(extra.pop("headers", {}))
    return client.post("/v1/screenings", json={"answers": answers, **extra}, headers=headers)


def count(store: Store) -> int:
    """How many screenings are stored."""
    return len(store.screenings.page(ListFilters(), 100, None)[0])


# --- authentication and roles ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/evaluate"),
        ("post", "/v1/screenings"),
        ("get", "/v1/screenings"),
        ("get", "/v1/screenings/abc"),
        ("post", "/v1/screenings/abc/review"),
    ],
)
def test_no_or_unknown_token_is_401_with_a_bearer_challenge(
    client: FlaskClient, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": "Basic eDp5"}):
        response = getattr(client, method)(path, json={}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.mimetype == "application/problem+json"
        assert "not-a-key" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/v1/screenings"), ("post", "/v1/screenings/abc/review")]
)
def test_portal_may_not_list_or_review(client: FlaskClient, method: str, path: str) -> None:
    response = getattr(client, method)(path, json={}, headers=bearer("portal-a"))
    assert response.status_code == 403
    assert response.get_json()["status"] == 403


def test_public_routes_need_no_token(client: FlaskClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.yaml", "/v1/questionnaire", "/v1/ruleset"):
        assert client.get(path).status_code == 200, path


# --- evaluate -------------------------------------------------------------------


def test_evaluate_returns_the_callers_view_and_stores_nothing(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    valid_answers["rf_fever"] = True
    body = {"answers": valid_answers, "patient_ref": "MRN-7"}
    portal = client.post("/v1/evaluate", json=body, headers=bearer("portal-a")).get_json()
    assert set(portal) == PATIENT_VIEW - {"id", "created_at"}
    assert portal["outcome"] == "urgent_care"
    assert set(portal["summary"]) == {"patient"}
    clinician = client.post("/v1/evaluate", json=body, headers=bearer("dr-c")).get_json()
    assert set(clinician) == FULL_VIEW - {"id", "created_at", "review"}
    assert clinician["decided_by"] == "possible_infection"
    assert clinician["patient_ref"] == "MRN-7"
    assert clinician["summary"]["clinician"]["findings"][0]["rule"] == "possible_infection"
    assert count(store) == 0
    assert store.audit.entries() == []


def test_evaluate_reports_every_answer_problem_by_link_id(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    valid_answers.update(age_years="Jane Doe", pain_intensity=12, leg_symptoms=[])
    del valid_answers["rf_fever"]
    response = client.post("/v1/evaluate", json={"answers": valid_answers}, headers=bearer("dr-c"))
    assert response.status_code == 422
    problem = response.get_json()
    assert set(problem["errors"]) == {"age_years", "pain_intensity", "leg_symptoms", "rf_fever"}
    assert "Jane" not in response.get_data(as_text=True)


# --- create -----------------------------------------------------------------------


def test_create_returns_201_with_location_in_the_callers_view(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    response = submit(client, valid_answers, patient_ref="MRN-1")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == PATIENT_VIEW
    assert response.headers["Location"] == f"/v1/screenings/{body['id']}"
    assert body["outcome"] == "discuss_with_specialist"
    assert body["created_at"].endswith("Z")
    clinician = submit(client, valid_answers, who="dr-c").get_json()
    assert set(clinician) == FULL_VIEW
    assert clinician["review"] == {
        "status": "pending",
        "due_at": None,
        "overdue": False,
        "history": [],
    }
    assert clinician["answers"] == valid_answers
    assert count(store) == 2


def test_stored_record_keeps_versions_hashes_and_creator(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    screening_id = submit(client, valid_answers, patient_ref="MRN-1").get_json()["id"]
    record = store.screenings.get(screening_id)
    assert record is not None
    rulebook = extension.of(client.application).rulebook
    assert record.created_by == "portal-a"
    assert record.patient_ref == "MRN-1"
    assert record.questionnaire.sha256 == rulebook.questionnaire.sha256
    assert record.ruleset.sha256 == rulebook.ruleset.sha256
    assert record.result.decided_by == "meets_discussion_criteria"
    assert record.answers == valid_answers


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "answers"),
        ({"answers": []}, "answers"),
        ({"answers": {}, "patient_ref": "Jane Doe"}, "patient_ref"),
        ({"answers": {}, "patient_ref": "x" * 65}, "patient_ref"),
        ({"answers": {}, "patient_ref": 12}, "patient_ref"),
        ({"answers": {}, "questionnaire": {"id": "other", "version": "1.0.0"}}, "questionnaire"),
        ({"answers": {}, "questionnaire": {"id": "lumbar-rfa-screening"}}, "questionnaire.version"),
        ({"answers": {}, "name": "Jane Doe"}, "name"),
    ],
)
def test_bad_body_fields_are_named(
    client: FlaskClient,
    store: Store,
    valid_answers: dict[str, Any],
    body: dict[str, Any],
    field: str,
) -> None:
    if body.get("answers") == {}:
        body["answers"] = valid_answers
    response = client.post("/v1/screenings", json=body, headers=bearer("portal-a"))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert "Jane" not in response.get_data(as_text=True)
    assert count(store) == 0


def test_matching_questionnaire_reference_is_accepted(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    ref = {"id": "lumbar-rfa-screening", "version": "1.1.0"}
    assert submit(client, valid_answers, questionnaire=ref).status_code == 201


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"text"', "application/json", 400),
        ('{"answers": NaN}', "application/json", 400),
        (b'{"answers": "\xff\xfe"}', "application/json", 400),
        ("answers=1", "application/x-www-form-urlencoded", 415),
        ('{"answers": {}}', "text/plain", 415),
        ('{"answers": {}}', None, 415),
    ],
)
def test_malformed_requests(
    client: FlaskClient,
    store: Store,
    data: str | bytes,
    content_type: str | None,
    status: int,
) -> None:
    headers = bearer("portal-a")
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/v1/screenings", data=data, headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert count(store) == 0


def test_body_over_64_kib_is_413(client: FlaskClient, store: Store) -> None:
    body = json.dumps({"answers": {"x": "y" * 70_000}})
    response = client.post(
        "/v1/screenings",
        data=body,
        headers={**bearer("portal-a"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert count(store) == 0


# --- read ---------------------------------------------------------------------------


def test_read_views_by_role_and_owner(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    screening_id = submit(client, valid_answers).get_json()["id"]
    own = client.get(f"/v1/screenings/{screening_id}", headers=bearer("portal-a"))
    assert own.status_code == 200 and set(own.get_json()) == PATIENT_VIEW
    other = client.get(f"/v1/screenings/{screening_id}", headers=bearer("portal-b"))
    assert other.status_code == 404
    full = client.get(f"/v1/screenings/{screening_id}", headers=bearer("dr-c"))
    assert set(full.get_json()) == FULL_VIEW
    assert client.get("/v1/screenings/nope", headers=bearer("dr-c")).status_code == 404
    reads = [e for e in store.audit.entries(screening_id) if e["action"] == "read"]
    assert [e["actor"] for e in reads] == ["key:portal-a", "key:dr-c"]


# --- list ---------------------------------------------------------------------------


def _fill(client: FlaskClient, answers: dict[str, Any]) -> list[str]:
    """Five screenings with known outcomes; ids oldest first."""
    variants: list[dict[str, Any]] = [
        {},
        {"rf_fever": True},
        {"pain_intensity": 3},
        {"rf_fever": True},
        {"age_years": 17},
    ]
    ids = []
    for number, change in enumerate(variants):
        response = submit(client, {**answers, **change}, patient_ref=f"MRN-{number % 2}")
        ids.append(response.get_json()["id"])
    return ids


def test_list_is_newest_first_and_filters(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    ids = _fill(client, valid_answers)
    page = client.get("/v1/screenings", headers=bearer("dr-c")).get_json()
    assert [item["id"] for item in page["items"]] == list(reversed(ids))
    assert page["next_cursor"] is None
    urgent = client.get("/v1/screenings?outcome=urgent_care", headers=bearer("dr-c")).get_json()
    assert [item["id"] for item in urgent["items"]] == [ids[3], ids[1]]
    assert {item["decided_by"] for item in urgent["items"]} == {"possible_infection"}
    mrn = client.get("/v1/screenings?patient_ref=MRN-1", headers=bearer("dr-c")).get_json()
    assert [item["id"] for item in mrn["items"]] == [ids[3], ids[1]]
    client.post(f"/v1/screenings/{ids[2]}/review", json={}, headers=bearer("dr-c"))
    reviewed = client.get("/v1/screenings?review_status=reviewed", headers=bearer("dr-c"))
    assert [item["id"] for item in reviewed.get_json()["items"]] == [ids[2]]
    pending = client.get("/v1/screenings?review_status=pending", headers=bearer("dr-c"))
    assert len(pending.get_json()["items"]) == 4


def test_list_time_window(client: FlaskClient, store: Store, valid_answers: dict[str, Any]) -> None:
    ids = _fill(client, valid_answers)
    third = store.screenings.get(ids[2])
    assert third is not None
    stamp = third.created_at.isoformat().replace("+00:00", "Z")
    since = client.get(
        "/v1/screenings", query_string={"created_from": stamp}, headers=bearer("dr-c")
    )
    assert [item["id"] for item in since.get_json()["items"]] == [ids[4], ids[3], ids[2]]
    until = client.get("/v1/screenings", query_string={"created_to": stamp}, headers=bearer("dr-c"))
    assert [item["id"] for item in until.get_json()["items"]] == [ids[2], ids[1], ids[0]]


def test_cursor_pagination_visits_every_screening_once(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    ids = _fill(client, valid_answers) + _fill(client, valid_answers)
    seen: list[str] = []
    cursor = None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/screenings", query_string=query, headers=bearer("dr-c")).get_json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"outcome": "cured"}, "outcome"),
        ({"review_status": "done"}, "review_status"),
        ({"created_from": "yesterday"}, "created_from"),
        ({"created_from": "2026-01-01T00:00:00"}, "created_from"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"cursor": "!!!"}, "cursor"),
        ({"patient_ref": "Jane Doe"}, "patient_ref"),
        (
            {"created_from": "2026-02-01T00:00:00Z", "created_to": "2026-01-01T00:00:00Z"},
            "created_to",
        ),
    ],
)
def test_bad_list_query_is_named(client: FlaskClient, query: dict[str, Any], field: str) -> None:
    response = client.get("/v1/screenings", query_string=query, headers=bearer("dr-c"))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert "Jane" not in response.get_data(as_text=True)


# --- review ---------------------------------------------------------------------------


def test_review_appends_to_history(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    screening_id = submit(client, valid_answers).get_json()["id"]
    path = f"/v1/screenings/{screening_id}/review"
    first = client.post(path, json={"note": "Called the patient."}, headers=bearer("dr-c"))
    assert first.status_code == 200
    assert first.get_json()["review"]["status"] == "reviewed"
    second = client.post(path, json={}, headers=bearer("dr-c")).get_json()
    history = second["review"]["history"]
    assert [(h["by"], h["note"]) for h in history] == [
        ("dr-c", "Called the patient."),
        ("dr-c", None),
    ]
    assert all(h["at"].endswith("Z") for h in history)
    assert set(second) == FULL_VIEW
    # The note shows through the API, never in the audit log.
    audit = json.dumps([{**e, "at": str(e["at"])} for e in store.audit.entries()])
    assert "Called the patient" not in audit
    assert [e["action"] for e in store.audit.entries(screening_id)] == [
        "create",
        "review",
        "review",
    ]


@pytest.mark.parametrize(
    "body",
    [{"note": "x" * 2001}, {"note": 5}, {"status": "reviewed"}],
)
def test_bad_review_body_is_named_and_changes_nothing(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any], body: dict[str, Any]
) -> None:
    screening_id = submit(client, valid_answers).get_json()["id"]
    response = client.post(
        f"/v1/screenings/{screening_id}/review", json=body, headers=bearer("dr-c")
    )
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == set(body)
    record = store.screenings.get(screening_id)
    assert record is not None
    assert record.review_status == "pending" and record.reviews == ()


def test_review_of_unknown_screening_is_404(client: FlaskClient) -> None:
    response = client.post("/v1/screenings/nope/review", json={}, headers=bearer("dr-c"))
    assert response.status_code == 404


def test_note_of_2000_characters_is_kept_exactly(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    screening_id = submit(client, valid_answers).get_json()["id"]
    note = "é<script>" + "n" * 1991
    response = client.post(
        f"/v1/screenings/{screening_id}/review", json={"note": note}, headers=bearer("dr-c")
    )
    assert response.get_json()["review"]["history"][0]["note"] == note


# --- audit -----------------------------------------------------------------------------


def test_audit_records_who_did_what_without_content(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    screening_id = submit(client, valid_answers, patient_ref="MRN-secret").get_json()["id"]
    client.get("/v1/screenings", headers=bearer("dr-c"))
    client.get(f"/v1/screenings/{screening_id}", headers=bearer("dr-c"))
    client.post(f"/v1/screenings/{screening_id}/review", json={"note": "n"}, headers=bearer("dr-c"))
    entries = store.audit.entries()
    assert [(e["actor"], e["action"], e["screening_id"]) for e in entries] == [
        ("key:portal-a", "create", screening_id),
        ("key:dr-c", "list", screening_id),
        ("key:dr-c", "read", screening_id),
        ("key:dr-c", "review", screening_id),
    ]
    # Ids and names only (the provider's session id only on signing in and out through it).
    assert set(entries[0]) == {"id", "at", "actor", "action", "screening_id", "sid"}
    assert all(e["sid"] is None for e in entries)
    assert "MRN-secret" not in json.dumps([str(e) for e in entries])


# --- readiness ---------------------------------------------------------------------------


def test_readyz(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready"}
