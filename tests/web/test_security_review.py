"""The security review's findings (issue 12), each as a regression test in process.

tests/deployment/test_security_review.py replays the same reproductions black box
against gunicorn; this file pins each defence down where it lives, on both
databases where the database matters.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from screening.services.keys import token_digest
from screening.storage.lists import ListFilters
from screening.storage.store import Store
from screening.web.observability import KNOWN_METHODS
from tests.support.app import BOTH_DATABASES
from tests.support.app import TOKENS
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app

FHIR = "application/fhir+json"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
METRICS_TOKEN = "metrics-token"


def stored(store: Store) -> int:
    """How many screenings are stored."""
    return len(store.screenings.page(ListFilters(), 100, None)[0])


def nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep (the outermost counts as one)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def fhir_response(rulebook: Rulebook, **extra: Any) -> dict[str, Any]:
    """A valid QuestionnaireResponse with ``extra`` top-level fields."""
    resource = questionnaire_response_from_answers(base_answers(), rulebook.questionnaire)
    return {**resource, **extra}


def post_fhir(client: FlaskClient, path: str, resource: Any) -> TestResponse:
    """POST a FHIR document as the portal."""
    headers = {**bearer("portal-a"), "Content-Type": FHIR}
    return client.post(path, data=json.dumps(resource), headers=headers)


def csrf_of(response: TestResponse) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(response.text)
    assert match is not None
    return match.group(1)


def sign_in(client: FlaskClient, **kwargs: Any) -> TestResponse:
    """Sign dr-c in through the form."""
    token = csrf_of(client.get("/review/login", **kwargs))
    return client.post(
        "/review/login", data={"token": TOKENS["dr-c"], "csrf_token": token}, **kwargs
    )


# --- 5. no 500s: bodies the store can't write -------------------------------------------


@BOTH_DATABASES
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"extension_x": 2**64}, id="integer above 2^64"),
        pytest.param({"extension_x": -(2**63) - 1}, id="integer below -2^63"),
        pytest.param({"extension_x": [{"n": 2**70}]}, id="big integer inside"),
        pytest.param({"extension_x": nested(300)}, id="nesting past 255"),
        pytest.param({"extension_x": nested(254)}, id="nesting past 254 in all"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/evaluate", "/v1/screenings"])
def test_unstorable_fhir_bodies_are_422_on_every_route(
    client: FlaskClient, store: Store, rulebook: Rulebook, extra: dict[str, Any], path: str
) -> None:
    response = post_fhir(client, path, fhir_response(rulebook, **extra))
    assert response.status_code == 422
    problem = response.get_json()
    assert list(problem["errors"]) == ["body"]
    assert "254 levels" in problem["errors"]["body"][0]
    assert stored(store) == 0


@BOTH_DATABASES
def test_the_deepest_and_largest_storable_bodies_are_stored_whole(
    client: FlaskClient, store: Store, rulebook: Rulebook
) -> None:
    # The resource itself is the first level: 253 more make 254.
    resource = fhir_response(rulebook, extension_x=nested(253), extension_y=[2**64 - 1, -(2**63)])
    response = post_fhir(client, "/v1/screenings", resource)
    assert response.status_code == 201, response.get_json()
    record = store.screenings.get(response.get_json()["id"])
    assert record is not None and record.source == resource


@pytest.mark.parametrize("entry", [5, True, "entries", {"resource": {}}])
def test_a_prefetch_bundle_whose_entry_is_not_a_list_is_422(
    client: FlaskClient, entry: Any
) -> None:
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": "123", "userId": "Practitioner/1"},
        "prefetch": {"questionnaireResponse": {"resourceType": "Bundle", "entry": entry}},
    }
    response = client.post("/cds-services/lumbar-rfa-screening", json=body, headers=bearer("dr-c"))
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["prefetch.questionnaireResponse.entry"]


@BOTH_DATABASES
def test_a_review_note_with_nul_is_refused_by_the_form_as_by_the_api(
    app: Flask, store: Store
) -> None:
    client = FlaskClient(app, use_cookies=True)
    created = client.post(
        "/v1/screenings", json={"answers": base_answers()}, headers=bearer("portal-a")
    )
    screening_id = created.get_json()["id"]
    sign_in(client)
    page = client.get(f"/review/{screening_id}")
    # The browser sends the NUL as %00 in the form body.
    response = client.post(
        f"/review/{screening_id}/review",
        data="note=line%20one%00line%20two&csrf_token=" + csrf_of(page),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 422
    assert "Must not contain NUL characters" in response.text
    api = client.post(
        f"/v1/screenings/{screening_id}/review",
        json={"note": "line one\u0000line two"},
        headers=bearer("dr-c"),
    )
    assert api.status_code == 422
    record = store.screenings.get(screening_id)
    assert record is not None
    assert record.reviews == () and record.review_status == "pending"


# --- 7. error keys are bounded -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/evaluate", "/v1/screenings"])
def test_unknown_envelope_fields_are_never_echoed_when_odd(
    client: FlaskClient, store: Store, path: str
) -> None:
    long_name = "Jane Doe " + "x" * 3000
    body = {"answers": base_answers(), long_name: 1, "patientRef": "MRN-1", "shoe_size": 9}
    response = client.post(path, json=body, headers=bearer("portal-a"))
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "Jane" not in text and "xxxx" not in text and "patientRef" not in text
    errors = response.get_json()["errors"]
    # A name shaped like one of ours is named; the others are counted.
    assert errors["shoe_size"] == ["Unknown field."]
    assert errors["body"] == [
        "2 more field(s) are not taken here; the fields are: "
        "answers, patient_ref, questionnaire, ruleset."
    ]
    assert stored(store) == 0


def test_unknown_fields_are_named_at_most_30_times(client: FlaskClient) -> None:
    body = {"answers": base_answers(), **{f"field_{n}": n for n in range(100)}}
    response = client.post("/v1/evaluate", json=body, headers=bearer("portal-a"))
    errors = response.get_json()["errors"]
    assert len(errors) == 31
    assert errors["body"][0].startswith("70 more field(s)")


def test_unknown_nested_fields_are_counted_under_their_object(client: FlaskClient) -> None:
    body = {"answers": base_answers(), "questionnaire": {"id": "x", "version": "1", "A B": 1}}
    response = client.post("/v1/evaluate", json=body, headers=bearer("portal-a"))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == ["questionnaire"]
    assert "A B" not in response.get_data(as_text=True)


def test_unknown_fhir_link_ids_are_never_echoed_when_odd(
    client: FlaskClient, rulebook: Rulebook
) -> None:
    resource = fhir_response(rulebook)
    odd = ["Jane Doe " + "y" * 3000, "MRN-12345", "x" * 65]
    resource["item"] += [{"linkId": link_id} for link_id in odd] + [{"linkId": "shoe_size"}] * 2
    response = post_fhir(client, "/v1/evaluate", resource)
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert "Jane" not in text and "MRN-12345" not in text and "x" * 65 not in text
    errors = response.get_json()["errors"]
    assert errors == {
        "shoe_size": ["Unknown item."],
        "item": ["3 more item(s) name no item of this questionnaire."],
    }


# --- 6. the access log names the key of a refused request ---------------------------------


def _access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    return [line for line in lines if line.get("logger") == "screening.access"]


def test_a_403_is_logged_with_the_key_name(
    client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert client.get("/v1/screenings", headers=bearer("portal-a")).status_code == 403
    assert (
        client.post("/v1/screenings/abc/review", json={}, headers=bearer("portal-b")).status_code
        == 403
    )
    entries = _access_lines(capsys)
    assert [(e["status"], e["key"]) for e in entries] == [(403, "portal-a"), (403, "portal-b")]
    # A 401 has no key to name.
    client.get("/v1/screenings", headers={"Authorization": "Bearer not-a-token"})
    assert [e["key"] for e in _access_lines(capsys)] == [None]


def test_a_429_is_logged_with_the_key_name(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with make_app(database_url, RATE_LIMIT="1/minute") as app:
        client = app.test_client()
        client.get("/v1/ruleset", headers=bearer("portal-a"))
        capsys.readouterr()
        assert client.get("/v1/ruleset", headers=bearer("portal-a")).status_code == 429
        assert [(e["status"], e["key"]) for e in _access_lines(capsys)] == [(429, "portal-a")]


# --- 2. metrics: label values from fixed sets ---------------------------------------------


@pytest.fixture
def metrics_client(database_url: str) -> Iterator[FlaskClient]:
    """A client of an app with a metrics token."""
    with make_app(database_url, METRICS_KEY=token_digest(METRICS_TOKEN)) as app:
        yield FlaskClient(app)


def series(client: FlaskClient) -> set[str]:
    """The label sets of the HTTP request series /metrics reports."""
    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    return {
        line.rsplit(" ", 1)[0]
        for line in text.splitlines()
        if line.startswith("screening_http_requests_total{")
    }


def odd_requests(client: FlaskClient, n: int) -> None:
    """One request of each odd kind: unknown method and path, unknown id, odd method."""
    client.open(f"/nope-{n}/{'z' * n}", method=f"XAB{n}CD")
    client.get(f"/v1/screenings/{n}", headers=bearer("portal-a"))
    client.open("/v1/questionnaire", method=f"Q{n}")


def test_odd_methods_and_paths_add_no_series(metrics_client: FlaskClient) -> None:
    odd_requests(metrics_client, 0)
    series(metrics_client)
    before = series(metrics_client)
    for n in range(1, 300):
        odd_requests(metrics_client, n)
    after = series(metrics_client)
    # 900 requests of kinds seen once before: not one new series.
    assert after == before
    # Whatever any test sent this process: methods from the fixed set only, and nothing
    # of the flood's made-up methods and paths in any label.
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', line)) for line in after]
    assert {label["method"] for label in labels} <= KNOWN_METHODS | {"other"}
    assert {"other", "GET"} <= {label["method"] for label in labels}
    assert not any("XAB" in line or "nope" in line or "Q1" in line for line in after)


# --- 3. rate limits: one budget per caller ------------------------------------------------


@pytest.fixture
def limited(database_url: str) -> Iterator[Flask]:
    """An app limited to 5 requests per minute per caller."""
    with make_app(database_url, RATE_LIMIT="5/minute") as app:
        yield app


def test_one_key_has_one_budget_across_all_routes(limited: Flask) -> None:
    client = limited.test_client()
    body = {"answers": base_answers()}
    who = bearer("portal-a")
    statuses = [
        client.post("/v1/evaluate", json=body, headers=who).status_code,
        client.get("/v1/questionnaire", headers=who).status_code,
        client.get("/v1/ruleset", headers=who).status_code,
        client.post("/v1/screenings", json=body, headers=who).status_code,
        client.get("/cds-services", headers=who).status_code,
        client.get("/openapi.yaml", headers=who).status_code,
        client.post("/v1/evaluate", json=body, headers=who).status_code,
    ]
    assert statuses == [200, 200, 200, 201, 200, 429, 429]
    # The key's next route is refused too; another key still has its whole budget.
    assert client.get("/v1/screenings/x", headers=who).status_code == 429
    assert client.get("/v1/ruleset", headers=bearer("portal-b")).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_unknown_paths_draw_on_the_callers_budget(limited: Flask) -> None:
    client = FlaskClient(limited)
    statuses = [client.get(f"/nothing-{n}").status_code for n in range(5)]
    assert statuses == [404] * 5
    assert client.open("/nothing", method="XAB12CD").status_code == 429
    assert client.get("/v1/questionnaire").status_code == 429
    # The same flood from another address leaves this one alone, and back.
    other = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/v1/questionnaire", environ_base=other).status_code == 200


def test_signed_in_clinicians_are_counted_by_key_not_by_address(limited: Flask) -> None:
    clinician = FlaskClient(limited, use_cookies=True)
    assert sign_in(clinician).status_code == 303  # 2 requests from the shared address
    # Twelve anonymous page loads from the same (proxy) address use up its budget...
    stranger = FlaskClient(limited, use_cookies=True)
    statuses = [stranger.get("/review/").status_code for _ in range(12)]
    assert statuses.count(429) == 9
    # ... and the clinician, counted by key, works on.
    assert clinician.get("/review/").status_code == 200
    # The clinician's key has one budget, pages and API together (5 in all).
    statuses = [clinician.get("/v1/screenings", headers=bearer("dr-c")).status_code]
    statuses += [clinician.get("/review/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 200, 429]


def test_an_anonymous_flood_from_one_client_behind_the_proxy_blocks_no_other(
    database_url: str,
) -> None:
    with make_app(database_url, RATE_LIMIT="5/minute", TRUSTED_PROXIES=1) as app:
        proxy = {"REMOTE_ADDR": "10.0.0.2"}

        def client_at(address: str) -> dict[str, Any]:
            return {"environ_base": proxy, "headers": {"X-Forwarded-For": address}}

        flood = FlaskClient(app, use_cookies=True)
        assert [flood.get("/review/", **client_at("198.51.100.1")).status_code for _ in range(8)][
            5:
        ] == [429] * 3
        # A spoofed address in front of the proxy's entry changes nothing: the proxy's
        # own entry (the last one) names the client.
        spoofed = client_at("203.0.113.9, 198.51.100.1")
        assert flood.get("/review/", **spoofed).status_code == 429
        clinician = FlaskClient(app, use_cookies=True)
        assert sign_in(clinician, **client_at("198.51.100.2")).status_code == 303
        assert clinician.get("/review/", **client_at("198.51.100.2")).status_code == 200


def test_without_trusted_proxies_forwarded_addresses_are_ignored(limited: Flask) -> None:
    client = FlaskClient(limited)
    statuses = [
        client.get("/v1/questionnaire", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
        for n in range(7)
    ]
    assert statuses == [200] * 5 + [429] * 2


@pytest.mark.parametrize("value", [-1, "two", 11])
def test_an_unusable_proxy_count_stops_start_up(database_url: str, value: object) -> None:
    from screening import StartupError

    with pytest.raises(StartupError, match="SCREENING_TRUSTED_PROXIES"):
        with make_app(database_url, TRUSTED_PROXIES=value):
            pass


# --- 4. the body limit on every transfer ----------------------------------------------------


def chunked(client: FlaskClient, method: str, path: str, body: bytes, **headers: str) -> Any:
    """Send ``body`` as a server does a chunked one: no length, a stream the server ends."""
    return client.open(
        path,
        method=method,
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", **headers},
        environ_overrides={"wsgi.input_terminated": True},
    )


@BOTH_DATABASES
def test_a_chunked_body_past_64_kib_is_413_and_stores_nothing(app: Flask, store: Store) -> None:
    client = FlaskClient(app)
    # Valid JSON within the first 64 KiB, padded past it: cut at the limit, it was stored.
    body = json.dumps({"answers": base_answers()}).encode()
    padded = body + b" " * (80_000 - len(body))
    headers = {**bearer("portal-a"), "Content-Type": "application/json"}
    response = chunked(client, "POST", "/v1/screenings", padded, **headers)
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == "The request body is larger than 64 KiB."
    assert stored(store) == 0
    # Within the limit, a chunked body is an ordinary body, up to the last byte.
    exactly = body + b" " * (64 * 1024 - len(body))
    assert chunked(client, "POST", "/v1/screenings", exactly, **headers).status_code == 201
    assert chunked(client, "POST", "/v1/screenings", exactly + b" ", **headers).status_code == 413
    assert stored(store) == 1


@pytest.mark.parametrize("path", ["/healthz", "/v1/questionnaire", "/nothing", "/review/login"])
def test_an_oversized_body_is_413_on_every_route(client: FlaskClient, path: str) -> None:
    big = b"x" * (64 * 1024 + 1)
    for response in (client.get(path, data=big), chunked(client, "GET", path, big)):
        assert response.status_code == 413, path
        if not path.startswith("/review/"):
            assert response.mimetype == "application/problem+json"
    assert client.get(path, data=b"x" * 1024).status_code in (200, 404)
