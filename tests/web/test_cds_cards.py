"""CDS cards stored by uuid and linked to their screening; feedback stored, audited, shown."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from screening.storage.store import Store
from screening.storage.tables import cds_cards
from screening.storage.tables import cds_feedback
from screening.web import cds as cds_views
from tests.support.app import BOTH_DATABASES
from tests.support.app import TOKENS
from tests.support.app import bearer
from tests.support.app import make_app

#: Where clinicians reach the service (SCREENING_PUBLIC_URL): the cards' links start with it.
PUBLIC_URL = "https://screening.hospital.test"
SERVICE = "/cds-services/lumbar-rfa-screening"
FEEDBACK = f"{SERVICE}/feedback"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def hook_body(rulebook: Rulebook, answers: dict[str, Any], patient: str = "1288992") -> Any:
    """A patient-view request whose prefetch holds one response."""
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/1", "patientId": patient},
        "prefetch": {
            "questionnaireResponse": questionnaire_response_from_answers(
                answers, rulebook.questionnaire
            )
        },
    }


def _store(client: FlaskClient, answers: dict[str, Any]) -> str:
    response = client.post(
        "/v1/screenings",
        json={"answers": answers, "patient_ref": "MRN-7"},
        headers=bearer("portal-a"),
    )
    assert response.status_code == 201
    return str(response.get_json()["id"])


def _card(client: FlaskClient, rulebook: Rulebook, answers: dict[str, Any]) -> dict[str, Any]:
    response = client.post(SERVICE, json=hook_body(rulebook, answers), headers=bearer("dr-c"))
    assert response.status_code == 200, response.get_json()
    (card,) = response.get_json()["cards"]
    return dict(card)


def _rows(store: Store, table: sa.Table) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def _entry(card: str, outcome: str = "accepted", **extra: Any) -> dict[str, Any]:
    return {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-12-02T09:30:00Z", **extra}


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    with make_app(database_url, PUBLIC_URL=PUBLIC_URL) as made:
        yield made


@BOTH_DATABASES
def test_a_card_links_to_the_stored_screening_with_the_same_answers(
    client: FlaskClient, store: Store, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    unmatched = _card(client, rulebook, valid_answers)
    assert unmatched["links"][0]["url"] == f"{PUBLIC_URL}/review/"
    screening_id = _store(client, valid_answers)
    card = _card(client, rulebook, valid_answers)
    assert card["links"][0]["url"] == f"{PUBLIC_URL}/review/{screening_id}"
    assert card["links"][0]["label"] == "Open the stored screening with these answers"
    # Other answers: another screening, not this one.
    other = _card(client, rulebook, {**valid_answers, "pain_intensity": 3})
    assert other["links"][0]["url"] == f"{PUBLIC_URL}/review/"
    shown = {row["uuid"]: row for row in _rows(store, cds_cards)}
    assert set(shown) == {unmatched["uuid"], card["uuid"], other["uuid"]}
    row = shown[card["uuid"]]
    assert row["screening_id"] == screening_id
    assert row["caller"] == "key:dr-c"
    assert row["patient_id"] == "1288992"
    assert row["summary"] == card["summary"]
    assert row["indicator"] == card["indicator"]
    assert row["outcome"] == "discuss_with_specialist"
    assert shown[unmatched["uuid"]]["screening_id"] is None
    actions = [(e["action"], e["screening_id"]) for e in store.audit.entries(screening_id)]
    assert ("cds_card", screening_id) in actions


def _sign_in(app: Flask) -> FlaskClient:
    browser = FlaskClient(app, use_cookies=True)
    page = browser.get("/review/login")
    token = _CSRF.search(page.text)
    assert token is not None
    browser.post("/review/login", data={"token": TOKENS["dr-c"], "csrf_token": token.group(1)})
    return browser


@BOTH_DATABASES
def test_feedback_is_stored_audited_and_shown_on_the_review_page(
    app: Flask, client: FlaskClient, store: Store, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    screening_id = _store(client, valid_answers)
    card = _card(client, rulebook, valid_answers)
    body = {
        "feedback": [
            _entry(
                card["uuid"],
                "overridden",
                overrideReason={
                    "reason": {
                        "code": "patient-declined",
                        "system": "https://ehr.example/reasons",
                        "display": "Patient declined",
                    },
                    "userComment": "Talked it over at the visit.",
                },
            ),
            _entry("8e6a4d8e-0000-4000-8000-000000000000", acceptedSuggestions=[{"id": "s1"}]),
        ]
    }
    response = client.post(FEEDBACK, json=body, headers=bearer("dr-c"))
    assert response.status_code == 200
    assert response.get_json() == {"received": 2, "unknown_cards": 1}
    rows = sorted(_rows(store, cds_feedback), key=lambda r: r["id"])
    assert [(r["card_uuid"], r["known"], r["screening_id"]) for r in rows] == [
        (card["uuid"], True, screening_id),
        ("8e6a4d8e-0000-4000-8000-000000000000", False, None),
    ]
    assert rows[0]["override_reason"]["code"] == "patient-declined"
    assert rows[0]["user_comment"] == "Talked it over at the visit."
    assert rows[0]["outcome_at"] == datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    assert rows[1]["accepted_suggestions"] == [{"id": "s1"}]
    audited = [e for e in store.audit.entries() if e["action"] == "cds_feedback"]
    assert [(e["actor"], e["screening_id"]) for e in audited] == [
        ("key:dr-c", screening_id),
        ("key:dr-c", None),
    ]
    page = _sign_in(app).get(f"/review/{screening_id}")
    assert page.status_code == 200
    text = page.text
    assert "Feedback from the EHR" in text
    assert "Card overridden" in text
    assert "Patient declined" in text
    assert "Talked it over at the visit." in text
    assert "02 Dec 2026, 09:30 UTC" in text


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["feedback"]),
        ({"feedback": []}, ["feedback"]),
        ({"feedback": "x"}, ["feedback"]),
        ({"feedback": [3]}, ["feedback.0"]),
        (
            {
                "feedback": [
                    {"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-12-02T09:30:00Z"}
                ]
            },
            ["feedback.0.outcome"],
        ),
        (
            {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-12-02"}]},
            ["feedback.0.outcomeTimestamp"],
        ),
        (
            {
                "feedback": [
                    {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-12-02T09:30:00"}
                ]
            },
            ["feedback.0.outcomeTimestamp"],
        ),
        (
            {"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2026-12-02T09:30:00Z"}]},
            ["feedback.0.card"],
        ),
        (
            {"feedback": [_entry("c", overrideReason={"userComment": "x"})]},
            ["feedback.0.overrideReason"],
        ),
        (
            {"feedback": [_entry("c", "overridden", overrideReason={"reason": "x"})]},
            ["feedback.0.overrideReason.reason"],
        ),
        (
            {"feedback": [_entry("c", "overridden", overrideReason={"userComment": "x" * 2001})]},
            ["feedback.0.overrideReason.userComment"],
        ),
        (
            {"feedback": [_entry("c", acceptedSuggestions=[{"nope": 1}])]},
            ["feedback.0.acceptedSuggestions.0.id"],
        ),
        (
            {"feedback": [_entry("c", acceptedSuggestions=[{"id": "s"}] * 21)]},
            ["feedback.0.acceptedSuggestions"],
        ),
        # What the schema doesn't allow is refused, null included.
        (
            {"feedback": [_entry("c", outcomeTimestamp="2026-12-02 09:30:00Z")]},
            ["feedback.0.outcomeTimestamp"],
        ),
        (
            {"feedback": [_entry("c", outcomeTimestamp="2026-12-02T09:30Z")]},
            ["feedback.0.outcomeTimestamp"],
        ),
        (
            {"feedback": [_entry("c", outcomeTimestamp="2026-12-02T09:30:00+0100")]},
            ["feedback.0.outcomeTimestamp"],
        ),
        (
            {"feedback": [_entry("c", outcomeTimestamp="2026-13-02T09:30:00Z")]},
            ["feedback.0.outcomeTimestamp"],
        ),
        ({"feedback": [_entry("c", overrideReason=None)]}, ["feedback.0.overrideReason"]),
        (
            {"feedback": [_entry("c", "overridden", overrideReason=None)]},
            ["feedback.0.overrideReason"],
        ),
        (
            {"feedback": [_entry("c", "overridden", overrideReason={"reason": None})]},
            ["feedback.0.overrideReason.reason"],
        ),
        (
            {"feedback": [_entry("c", "overridden", overrideReason={"reason": {"code": ""}})]},
            ["feedback.0.overrideReason.reason.code"],
        ),
        (
            {"feedback": [_entry("c", "overridden", overrideReason={"userComment": None})]},
            ["feedback.0.overrideReason.userComment"],
        ),
        ({"feedback": [_entry("c", colour="red")]}, ["feedback.0.colour"]),
        ({"feedback": [_entry("c")] * 51}, ["feedback"]),
    ],
)
def test_bad_feedback_is_422_naming_the_field_and_stores_nothing(
    client: FlaskClient, store: Store, body: dict[str, Any], fields: list[str]
) -> None:
    response = client.post(FEEDBACK, json=body, headers=bearer("dr-c"))
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == fields
    assert _rows(store, cds_feedback) == []


def test_a_bad_outcome_gets_the_message_openapi_shows(client: FlaskClient) -> None:
    body = {"feedback": [_entry("c", "maybe")]}
    response = client.post(FEEDBACK, json=body, headers=bearer("dr-c"))
    assert response.get_json()["errors"] == {
        "feedback.0.outcome": ["Must be accepted or overridden."]
    }


def test_feedback_takes_what_the_schema_allows(client: FlaskClient, store: Store) -> None:
    body = {
        "feedback": [
            _entry("c", outcomeTimestamp="2026-12-02T10:30:00.250+01:00"),
            _entry("c", "overridden", overrideReason={}),
            _entry("c", "overridden", overrideReason={"userComment": ""}),
            _entry("c", "overridden", overrideReason={"reason": {"code": "x"}}),
            # CDS Hooks extensions are taken (and not kept); so is more about a suggestion.
            _entry("c", extension={"x-ehr": 1}, acceptedSuggestions=[{"id": "s", "label": "L"}]),
            _entry("c", "overridden", overrideReason={"userComment": "ok", "x-note": 1}),
        ]
    }
    response = client.post(FEEDBACK, json=body, headers=bearer("dr-c"))
    assert response.status_code == 200, response.get_json()
    rows = sorted(_rows(store, cds_feedback), key=lambda r: r["id"])
    moment = rows[0]["outcome_at"]
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    assert moment == datetime(2026, 12, 2, 9, 30, 0, 250000, tzinfo=UTC)
    assert [(r["override_reason"], r["user_comment"]) for r in rows[1:]] == [
        (None, None),
        (None, None),
        ({"code": "x"}, None),
        (None, None),
        (None, "ok"),
    ]
    assert rows[-2]["accepted_suggestions"] == [{"id": "s"}]


def test_feedback_needs_a_clinician_or_an_ehr(client: FlaskClient) -> None:
    body = {"feedback": [_entry("c")]}
    assert client.post(FEEDBACK, json=body).status_code == 401
    assert client.post(FEEDBACK, json=body, headers=bearer("portal-a")).status_code == 403


@BOTH_DATABASES
def test_purge_deletes_the_cards_and_feedback_of_purged_screenings_and_old_ones(
    client: FlaskClient, store: Store, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    _store(client, valid_answers)
    card = _card(client, rulebook, valid_answers)
    lone = _card(client, rulebook, {**valid_answers, "pain_intensity": 3})
    body = {"feedback": [_entry(card["uuid"]), _entry(lone["uuid"]), _entry("never-shown")]}
    assert client.post(FEEDBACK, json=body, headers=bearer("dr-c")).status_code == 200
    # Nothing is old enough yet.
    assert store.screenings.purge(datetime.now(UTC) - timedelta(days=1), "ops") == 0
    assert len(_rows(store, cds_cards)) == 2
    assert len(_rows(store, cds_feedback)) == 3
    assert store.screenings.purge(datetime.now(UTC) + timedelta(seconds=1), "ops") == 1
    assert _rows(store, cds_cards) == []
    assert _rows(store, cds_feedback) == []


def test_a_card_never_links_to_a_host_the_caller_chose(
    client: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    response = client.post(
        SERVICE,
        json=hook_body(rulebook, valid_answers),
        headers={**bearer("dr-c"), "Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    (card,) = response.get_json()["cards"]
    assert [link["url"] for link in card["links"]] == [f"{PUBLIC_URL}/review/"]


def test_without_a_public_url_a_card_has_no_links_and_the_log_says_so(
    database_url: str,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cds_views, "_told_links_off", False)
    with make_app(database_url) as plain:
        response = plain.test_client().post(
            SERVICE,
            json=hook_body(rulebook, valid_answers),
            headers={**bearer("dr-c"), "Host": "evil.example"},
        )
    (card,) = response.get_json()["cards"]
    assert "links" not in card
    assert card["summary"] and card["detail"]
    told = [r for r in caplog.records if "cards carry no links" in r.getMessage()]
    assert len(told) == 1 and told[0].levelno == logging.WARNING
