"""Inputs at the edges of the contract that once gave a 500 or were wrongly accepted.

Each was found while checking the service against openapi.yaml, by probing what
the schemathesis run does not reach: NUL bytes on PostgreSQL, unpaired
surrogates, the ends of the calendar, a trailing newline. Every answer here must
be a documented 4xx problem, on both databases.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.support.app import BOTH_DATABASES
from tests.support.app import bearer

pytestmark = BOTH_DATABASES


def create(client: FlaskClient, answers: dict[str, Any]) -> str:
    """Store a screening as the clinician; return its id."""
    response = client.post("/v1/screenings", json={"answers": answers}, headers=bearer("dr-c"))
    assert response.status_code == 201
    return str(response.get_json()["id"])


def cursor(stamp: str, screening_id: str) -> str:
    """A cursor in the service's encoding, with any content."""
    raw = json.dumps([stamp, screening_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_patient_ref_with_a_trailing_newline_is_refused(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    # Python's "$" also matches before a final newline; the contract's pattern does not.
    body = {"answers": valid_answers, "patient_ref": "MRN-1\n"}
    response = client.post("/v1/screenings", json=body, headers=bearer("dr-c"))
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"patient_ref"}
    listed = client.get("/v1/screenings?patient_ref=MRN-1%0A", headers=bearer("dr-c"))
    assert listed.status_code == 422


@pytest.mark.parametrize("screening_id", ["ab%00cd", "%C3%A9t%C3%A9", "%ED%A0%80"])
def test_ids_that_cannot_exist_are_not_found(client: FlaskClient, screening_id: str) -> None:
    # PostgreSQL refuses a NUL in text: this was a 500 there.
    got = client.get(f"/v1/screenings/{screening_id}", headers=bearer("dr-c"))
    assert got.status_code == 404
    reviewed = client.post(f"/v1/screenings/{screening_id}/review", json={}, headers=bearer("dr-c"))
    assert reviewed.status_code == 404


@pytest.mark.parametrize(
    "value",
    [
        cursor("2026-01-01T00:00:00+00:00", "ab\u0000cd"),
        cursor("2026-01-01T00:00:00+00:00", "\ud800"),
        cursor("0001-01-01T00:00:00+01:00", "0" * 32),
        cursor("9999-12-31T23:59:59-01:00", "0" * 32),
        cursor("2026-01-01T00:00:00", "0" * 32),
    ],
)
def test_cursor_the_service_did_not_issue_is_refused(client: FlaskClient, value: str) -> None:
    response = client.get("/v1/screenings", query_string={"cursor": value}, headers=bearer("dr-c"))
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"cursor"}


@pytest.mark.parametrize(
    ("name", "moment"),
    [("created_from", "0001-01-01T00:00:00+01:00"), ("created_to", "9999-12-31T23:59:59-01:00")],
)
def test_time_filter_outside_what_utc_can_hold_is_refused(
    client: FlaskClient, name: str, moment: str
) -> None:
    # Converting these to UTC overflowed: a 500 on both databases.
    response = client.get("/v1/screenings", query_string={name: moment}, headers=bearer("dr-c"))
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {name}


def test_time_filters_at_the_ends_of_the_calendar_work(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    screening_id = create(client, valid_answers)
    query = {"created_from": "0001-01-01T00:00:00Z", "created_to": "9999-12-31T23:59:59Z"}
    response = client.get("/v1/screenings", query_string=query, headers=bearer("dr-c"))
    assert response.status_code == 200
    assert [item["id"] for item in response.get_json()["items"]] == [screening_id]
