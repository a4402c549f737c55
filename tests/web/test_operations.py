"""Operating the service: request ids, JSON logs, metrics, rate limits, purge."""

from __future__ import annotations

import json
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

from screening import StartupError
from screening import create_app
from screening.services.keys import token_digest
from screening.storage.store import Store
from screening.storage.tables import screenings
from tests.support.app import BOTH_DATABASES
from tests.support.app import TOKENS
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.cds import DISCOVERY_URL
from tests.support.cds import ISS
from tests.support.cds import PUBLIC_URL
from tests.support.cds import authorization
from tests.support.cds import claims
from tests.support.cds import client_config
from tests.support.cds import jwk_set
from tests.support.cds import rsa_key
from tests.support.cds import sign

METRICS_TOKEN = "metrics-token"


def test_request_id_is_accepted_or_made(client: FlaskClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "portal-req-42"})
    assert given.headers["X-Request-ID"] == "portal-req-42"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32
    odd = client.get("/healthz", headers={"X-Request-ID": "has spaces and <tags>"})
    assert odd.headers["X-Request-ID"] != "has spaces and <tags>"


def test_access_log_is_one_json_line_without_content(
    client: FlaskClient, valid_answers: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.post(
        "/v1/screenings",
        json={"answers": valid_answers, "patient_ref": "MRN-LOGCHECK"},
        headers={**bearer("portal-a"), "X-Request-ID": "trace-me"},
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    access = [line for line in lines if line.get("logger") == "screening.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "trace-me"
    assert entry["route"] == "/v1/screenings"
    assert entry["status"] == 201
    assert entry["key"] == "portal-a"
    assert entry["duration_ms"] >= 0
    text = json.dumps(lines)
    assert "MRN-LOGCHECK" not in text and "portal-a-token" not in text


def _access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    return [line for line in lines if line.get("logger") == "screening.access"]


def test_a_passing_probe_is_counted_but_not_logged(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with make_app(database_url, METRICS_KEY=token_digest(METRICS_TOKEN)) as app:
        client = app.test_client()
        capsys.readouterr()
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert _access_lines(capsys) == []
        # Any other route still writes its line.
        client.get("/v1/questionnaire")
        assert [line["route"] for line in _access_lines(capsys)] == ["/v1/questionnaire"]
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        text = metrics.get_data(as_text=True)
        assert 'screening_http_requests_total{method="GET",route="/healthz",status="200"}' in text
        assert 'screening_http_requests_total{method="GET",route="/readyz",status="200"}' in text


def test_a_failing_probe_is_logged(capsys: pytest.CaptureFixture[str]) -> None:
    with make_app("sqlite:////nonexistent-folder/screening.db") as app:
        capsys.readouterr()
        assert app.test_client().get("/readyz").status_code == 503
        [entry] = _access_lines(capsys)
        assert entry["route"] == "/readyz" and entry["status"] == 503


@pytest.fixture
def metrics_app(database_url: str) -> Iterator[Flask]:
    """An app with a metrics token configured."""
    with make_app(database_url, METRICS_KEY=token_digest(METRICS_TOKEN)) as app:
        yield app


def test_metrics_need_the_metrics_token(metrics_app: Flask, valid_answers: dict[str, Any]) -> None:
    client = metrics_app.test_client()
    client.post("/v1/screenings", json={"answers": valid_answers}, headers=bearer("portal-a"))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("dr-c")).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert (
        'screening_http_requests_total{method="POST",route="/v1/screenings",status="201"}' in text
    )
    assert 'screening_outcomes_total{outcome="discuss_with_specialist"}' in text
    assert "screening_http_request_duration_seconds_bucket" in text


def test_metrics_are_off_without_a_token(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 404


@pytest.fixture
def limited(database_url: str) -> Iterator[FlaskClient]:
    """A client of an app limited to 3 requests per minute per key."""
    with make_app(database_url, RATE_LIMIT="3/minute") as app:
        yield app.test_client()


def test_rate_limit_is_per_key_with_problem_and_retry_after(
    limited: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers}
    for _ in range(3):
        assert (
            limited.post("/v1/evaluate", json=body, headers=bearer("portal-a")).status_code == 200
        )
    refused = limited.post("/v1/evaluate", json=body, headers=bearer("portal-a"))
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["status"] == 429
    assert int(refused.headers["Retry-After"]) > 0
    # Another key has its own budget; health checks are never limited.
    assert limited.post("/v1/evaluate", json=body, headers=bearer("portal-b")).status_code == 200
    for _ in range(5):
        assert limited.get("/healthz").status_code == 200


@pytest.mark.parametrize("value", ["lots", "50 per fortnight", "/second"])
def test_unreadable_rate_limit_stops_start_up(value: str) -> None:
    with pytest.raises(StartupError, match="SCREENING_RATE_LIMIT"):
        create_app({"TESTING": True, "RATE_LIMIT": value, "DATABASE_URL": "sqlite://"})


@BOTH_DATABASES
def test_purge_deletes_old_screenings_with_their_records(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any], app: Flask
) -> None:
    headers = {**bearer("portal-a"), "Idempotency-Key": "old-one"}
    old = client.post("/v1/screenings", json={"answers": valid_answers}, headers=headers)
    old_id = old.get_json()["id"]
    client.post(f"/v1/screenings/{old_id}/review", json={"note": "n"}, headers=bearer("dr-c"))
    new_id = client.post(
        "/v1/screenings", json={"answers": valid_answers}, headers=bearer("portal-a")
    ).get_json()["id"]
    with store.engine.begin() as conn:
        conn.execute(
            screenings.update()
            .where(screenings.c.id == old_id)
            .values(created_at=datetime.now(UTC) - timedelta(days=400))
        )
    result = app.test_cli_runner().invoke(args=["screenings", "purge", "--older-than", "365"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 screening " in result.output
    assert store.screenings.get(old_id) is None
    assert store.screenings.get(new_id) is not None
    with store.engine.connect() as conn:
        for table in ("reviews", "idempotency_records"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
    purged = [e for e in store.audit.entries(old_id) if e["action"] == "purge"]
    assert [e["actor"] for e in purged] == ["cli"]
    # The key is free again: a new request with it stores a new screening.
    again = client.post("/v1/screenings", json={"answers": valid_answers}, headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers


def test_purge_needs_a_positive_number_of_days(app: Flask) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["screenings", "purge", "--older-than", "0"]).exit_code == 2
    assert runner.invoke(args=["screenings", "purge"]).exit_code == 2


def test_the_access_log_names_the_caller_however_it_came_in(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One caller per request, whichever way it proved who it is: an API key (also when
    its role is refused), a review session, an EHR's signed token; nobody for a token no
    key matches."""
    key = rsa_key()
    config = client_config(jwks=jwk_set(key), fhir_servers=[])
    with make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as app:
        client = app.test_client()
        capsys.readouterr()
        assert client.get("/v1/screenings", headers=bearer("dr-c")).status_code == 200
        assert client.get("/v1/screenings", headers=bearer("portal-a")).status_code == 403
        unknown = {"Authorization": "Bearer no-such-token"}
        assert client.get("/v1/screenings", headers=unknown).status_code == 401
        client.get(DISCOVERY_URL, headers=authorization(sign(key, claims(aud=DISCOVERY_URL))))
        login = client.get("/review/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert token is not None
        client.post("/review/login", data={"token": TOKENS["dr-c"], "csrf_token": token[1]})
        page = client.get("/review/")
        assert "Signed in as <strong>dr-c</strong>" in page.text
        keys = [(line["route"], line["status"], line["key"]) for line in _access_lines(capsys)]
    assert keys == [
        ("/v1/screenings", 200, "dr-c"),
        ("/v1/screenings", 403, "portal-a"),
        ("/v1/screenings", 401, None),
        ("/cds-services", 200, ISS),
        ("/review/login", 200, None),
        ("/review/login", 303, None),
        ("/review/", 200, "dr-c"),
    ]
