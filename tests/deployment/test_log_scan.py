"""A whole run's logs never carry answers, notes, tokens or patient_ref."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import load_rules
from tests.support.app import API_KEYS
from tests.support.app import RULES_DIR
from tests.support.app import TOKENS
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.server import gunicorn

# Distinctive values a leak would show.
PATIENT_REF = "MRN-LEAKCHECK-4711"
NOTE = "Spoke with Jane Leakcheck about her MRI"
BAD_ANSWER = "Leakcheck-answer-value"
BAD_TOKEN = "Leakcheck-not-a-token"
REQUEST_ID = "leakcheck-request-1"


def _session(base: str) -> None:
    """What a portal, a clinician, an EHR and a stranger do in a day."""
    rulebook = load_rules(RULES_DIR)
    answers = base_answers()
    with requests.Session() as http:

        def call(method: str, path: str, **kwargs: Any) -> requests.Response:
            response = http.request(method, f"{base}{path}", timeout=10, **kwargs)
            assert response.status_code < 500, (path, response.status_code)
            return response

        call("GET", "/v1/questionnaire?lang=es")
        created = call(
            "POST",
            "/v1/screenings",
            json={"answers": {**answers, "rf_fever": True}, "patient_ref": PATIENT_REF},
            headers={**bearer("portal-a"), "Idempotency-Key": "leak-1", "X-Request-ID": REQUEST_ID},
        ).json()
        call(
            "POST",
            "/v1/screenings",
            json={"answers": {**answers, "rf_fever": True}, "patient_ref": PATIENT_REF},
            headers={**bearer("portal-a"), "Idempotency-Key": "leak-1"},
        )
        call(
            "POST",
            "/v1/evaluate",
            json={"answers": {**answers, "pregnant": BAD_ANSWER}},
            headers=bearer("portal-a"),
        )
        call(
            "POST",
            "/v1/screenings",
            json={"answers": answers, "patient_ref": f"{PATIENT_REF} x"},
            headers=bearer("portal-a"),
        )
        call(
            "POST",
            "/v1/screenings",
            data=f'{{"answers": "{BAD_ANSWER}"',
            headers={**bearer("portal-a"), "Content-Type": "application/json"},
        )
        resource = questionnaire_response_from_answers(answers, rulebook.questionnaire)
        call(
            "POST",
            "/v1/screenings",
            data=json.dumps(resource),
            headers={**bearer("portal-b"), "Content-Type": "application/fhir+json"},
        )
        call("GET", f"/v1/screenings?patient_ref={PATIENT_REF}", headers=bearer("dr-c"))
        call("GET", f"/v1/screenings/{created['id']}", headers=bearer("dr-c"))
        call("GET", f"/v1/screenings/{created['id']}", headers=bearer("portal-b"))
        call(
            "POST",
            f"/v1/screenings/{created['id']}/review",
            json={"note": NOTE},
            headers=bearer("dr-c"),
        )
        call(
            "POST",
            f"/v1/screenings/{created['id']}/review",
            json={"note": NOTE * 100},
            headers=bearer("dr-c"),
        )
        call(
            "POST",
            "/cds-services/lumbar-rfa-screening",
            headers=bearer("dr-c"),
            json={
                "hook": "patient-view",
                "hookInstance": "h-1",
                "context": {"patientId": PATIENT_REF},
                "prefetch": {"questionnaireResponse": resource},
            },
        )
        call("GET", "/v1/screenings", headers={"Authorization": f"Bearer {BAD_TOKEN}"})
        call("GET", f"/v1/nothing/{PATIENT_REF}")


@pytest.mark.postgres
def test_logs_of_a_whole_run_carry_no_patient_data(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database_url = request.getfixturevalue("postgres_url")
    log = tmp_path / "server.log"
    env = {
        "SCREENING_DATABASE_URL": database_url,
        "SCREENING_API_KEYS": API_KEYS,
        "SCREENING_RATE_LIMIT": "",
    }
    with gunicorn(env, log, workers=2, threads=2) as base:
        _session(base)
    text = log.read_text(encoding="utf-8", errors="replace")
    app_lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    routes = {line.get("route") for line in app_lines if line.get("logger") == "screening.access"}
    assert "/v1/screenings/<screening_id>/review" in routes  # the run was logged
    assert any(line.get("request_id") == REQUEST_ID for line in app_lines)
    forbidden = [
        PATIENT_REF,
        "LEAKCHECK",
        "Leakcheck",
        "Jane",
        BAD_ANSWER,
        BAD_TOKEN,
        *TOKENS.values(),
        "low_back_only",
        "more_than_12_months",
        "rf_fever",
    ]
    for secret in forbidden:
        assert secret not in text, secret
