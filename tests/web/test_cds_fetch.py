"""CDS Hooks without prefetch: the service fetches from the EHR's FHIR server, a real one
(Medplum's FHIR engine under Node), with the EHR's token, and from nowhere else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.cds import PUBLIC_URL
from tests.support.cds import FhirServer
from tests.support.cds import SigningKey
from tests.support.cds import authorization
from tests.support.cds import client_config
from tests.support.cds import fhir_server
from tests.support.cds import jwk_set
from tests.support.cds import rsa_key
from tests.support.cds import sign

SERVICE = "/cds-services/lumbar-rfa-screening"
PATIENT = "pat-0042"


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """A Medplum FHIR server holding two responses of one patient and one of another."""
    with fhir_server(tmp_path_factory.mktemp("fhir")) as server:
        yield server


@pytest.fixture(scope="module")
def ehr_key() -> SigningKey:
    """The EHR's signing key."""
    return rsa_key()


@pytest.fixture
def ehr_app(database_url: str, ehr_key: SigningKey, fhir: FhirServer) -> Iterator[Flask]:
    """The app trusting the EHR, whose FHIR server is the Medplum one (its /fhir/ path)."""
    config = client_config(jwks=jwk_set(ehr_key), fhir_servers=[f"{fhir.origin}/fhir"])
    with make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as app:
        yield app


@pytest.fixture
def ehr(ehr_app: Flask) -> FlaskClient:
    """A client of that app."""
    return ehr_app.test_client()


def _store_responses(
    fhir: FhirServer, rulebook: Rulebook, answers: dict[str, Any], patient: str
) -> None:
    older: dict[str, Any] = dict(
        questionnaire_response_from_answers({**answers, "rf_fever": True}, rulebook.questionnaire)
    )
    latest: dict[str, Any] = dict(
        questionnaire_response_from_answers(answers, rulebook.questionnaire)
    )
    for resource, authored in ((older, "2026-01-01T10:00:00Z"), (latest, "2026-06-01T10:00:00Z")):
        resource["subject"] = {"reference": f"Patient/{patient}"}
        resource["authored"] = authored
        fhir.create(resource)


def hook(
    fhir_base: str | None, token: str | None, patient: str = PATIENT, **extra: Any
) -> dict[str, Any]:
    """A patient-view request with no prefetch."""
    body: dict[str, Any] = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/1", "patientId": patient},
        **extra,
    }
    if fhir_base is not None:
        body["fhirServer"] = fhir_base
    if token is not None:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/QuestionnaireResponse.read",
            "subject": "screening-service",
        }
    return body


def _new_requests(fhir: FhirServer, before: int) -> list[dict[str, Any]]:
    return fhir.requests()[before:]


def test_without_prefetch_the_latest_response_is_fetched_with_the_ehrs_token(
    ehr: FlaskClient,
    ehr_key: SigningKey,
    fhir: FhirServer,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
) -> None:
    _store_responses(fhir, rulebook, valid_answers, PATIENT)
    _store_responses(fhir, rulebook, {**valid_answers, "rf_fever": True}, "someone-else")
    before = len(fhir.requests())
    for body in (hook(fhir.base, fhir.token), hook(fhir.base, fhir.token, prefetch={})):
        response = ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key)))
        assert response.status_code == 200, response.get_json()
        (card,) = response.get_json()["cards"]
        # The latest of this patient's two: no red flag, not the older fever one.
        assert card["indicator"] == "info"
    asked = _new_requests(fhir, before)
    assert len(asked) == 2
    assert asked[0]["method"] == "GET"
    assert asked[0]["authorization"] == f"Bearer {fhir.token}"
    assert asked[0]["path"].startswith(
        f"/fhir/R4/QuestionnaireResponse?subject=Patient/{PATIENT}&questionnaire="
    )


def test_calls_to_one_fhir_server_reuse_their_connection(
    ehr: FlaskClient, ehr_key: SigningKey, fhir: FhirServer
) -> None:
    before = len(fhir.requests())
    for _ in range(3):
        body = hook(fhir.base, fhir.token, patient="pat-nobody")
        response = ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key)))
        assert response.status_code == 200
    ports = {r["port"] for r in _new_requests(fhir, before)}
    assert len(_new_requests(fhir, before)) == 3
    assert len(ports) == 1


def test_a_patient_with_no_response_gets_no_card(
    ehr: FlaskClient, ehr_key: SigningKey, fhir: FhirServer
) -> None:
    body = hook(fhir.base, fhir.token, patient="nobody-here")
    response = ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key)))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


@pytest.mark.parametrize(
    "where",
    [
        "http://127.0.0.1:9/fhir/R4",
        "{origin}/fhir-other/R4",
        "{origin}/moved/R4",
        "http://user@127.0.0.1/fhir/R4",
        "not a url",
    ],
)
def test_a_fhir_server_outside_the_clients_list_is_412_and_never_contacted(
    ehr: FlaskClient, ehr_key: SigningKey, fhir: FhirServer, where: str
) -> None:
    before = len(fhir.requests())
    body = hook(where.format(origin=fhir.origin), fhir.token)
    response = ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key)))
    assert response.status_code == 412
    assert response.mimetype == "application/problem+json"
    assert _new_requests(fhir, before) == []


def test_a_clinician_key_has_no_fhir_servers(
    ehr: FlaskClient, fhir: FhirServer, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    before = len(fhir.requests())
    response = ehr.post(SERVICE, json=hook(fhir.base, fhir.token), headers=bearer("dr-c"))
    assert response.status_code == 412
    assert _new_requests(fhir, before) == []


def test_failing_redirecting_or_slow_fhir_servers_are_412_never_500(
    database_url: str, ehr_key: SigningKey, fhir: FhirServer
) -> None:
    # Port 9 (discard): nothing listens there.
    config = client_config(jwks=jwk_set(ehr_key), fhir_servers=[fhir.origin, "http://127.0.0.1:9"])
    with make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as app:
        ehr = app.test_client()
        before = len(fhir.requests())

        def call(body: dict[str, Any]) -> int:
            return ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key))).status_code

        # The FHIR server refuses the token.
        assert call(hook(fhir.base, "not-the-token")) == 412
        # It redirects: the redirect is not followed (no second request, no token sent on).
        assert call(hook(f"{fhir.origin}/moved/R4", fhir.token)) == 412
        assert [r["path"].split("?")[0] for r in _new_requests(fhir, before)] == [
            "/fhir/R4/QuestionnaireResponse",
            "/moved/R4/QuestionnaireResponse",
        ]
        # It stalls: the service gives up after its read timeout.
        started = time.monotonic()
        assert call(hook(f"{fhir.origin}/slow/R4", fhir.token)) == 412
        assert time.monotonic() - started < 5
        # Nothing listens there.
        assert call(hook("http://127.0.0.1:9/fhir/R4", fhir.token)) == 412
        # No access token given: the service does not ask without one.
        before = len(fhir.requests())
        assert call(hook(fhir.base, None)) == 412
        assert _new_requests(fhir, before) == []


def test_without_fhir_server_no_card_and_bad_fields_are_named(
    ehr: FlaskClient, ehr_key: SigningKey, fhir: FhirServer
) -> None:
    response = ehr.post(SERVICE, json=hook(None, None), headers=authorization(sign(ehr_key)))
    assert response.get_json() == {"cards": []}
    body = {**hook(fhir.base, None), "fhirAuthorization": {"access_token": 7}}
    response = ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key)))
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["fhirAuthorization.access_token"]
    response = ehr.post(
        SERVICE, json={**hook(None, None), "fhirServer": 3}, headers=authorization(sign(ehr_key))
    )
    assert list(response.get_json()["errors"]) == ["fhirServer"]


def test_the_patient_id_cannot_change_the_query(
    ehr: FlaskClient, ehr_key: SigningKey, fhir: FhirServer
) -> None:
    before = len(fhir.requests())
    body = hook(fhir.base, fhir.token, patient="x&subject=Patient/pat-0042")
    response = ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key)))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    (asked,) = _new_requests(fhir, before)
    assert "subject=Patient/x%26subject%3DPatient%2Fpat-0042&" in asked["path"]


def test_the_discovery_template_searches_by_patient_reference(ehr: FlaskClient) -> None:
    template = ehr.get("/cds-services").get_json()["services"][0]["prefetch"]
    assert template["questionnaireResponse"].startswith(
        "QuestionnaireResponse?subject=Patient/{{context.patientId}}&"
    )
