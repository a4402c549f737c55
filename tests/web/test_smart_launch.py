"""The EHR launches the review pages (SMART App Launch, identity-v1.md part 2) through a real
authorization server: oidc-provider under Node with a SMART flavour (its
smart-configuration, ``launch`` and ``aud`` taken, ``patient`` in the token response)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urljoin
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from screening import StartupError
from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from screening.services.smart import parse_smart_clients
from screening.storage.store import Store
from tests.support.app import TOKENS
from tests.support.app import app_store
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.oidc import OpenIdProvider
from tests.support.oidc import openid_provider

PUBLIC_URL = "http://localhost"
EHR_ORIGIN = "https://ehr.hospital.test"
CLIENT_ID = "screening-in-ehr"
CLIENT_SECRET = "ehr-secret-for-tests"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    config = {
        "accounts": [
            {"id": "dr-jane", "name": "Dr Jane Carter", "fhirUser": "Practitioner/p-7"},
            {"id": "pat-1", "name": "A Patient", "fhirUser": "Patient/123"},
        ],
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [f"{PUBLIC_URL}/smart/callback"],
                "scope": "openid fhirUser launch",
            }
        ],
    }
    with openid_provider(tmp_path_factory.mktemp("smart"), config) as running:
        yield running


def smart_clients(provider: OpenIdProvider) -> str:
    return json.dumps(
        [
            {
                "iss": provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "frame_ancestors": [EHR_ORIGIN],
            }
        ]
    )


@pytest.fixture
def app(database_url: str, provider: OpenIdProvider) -> Iterator[Flask]:
    with make_app(
        database_url, SMART_CLIENTS=smart_clients(provider), PUBLIC_URL=PUBLIC_URL
    ) as made:
        yield made


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return FlaskClient(app, use_cookies=True)


def launched(
    client: FlaskClient, provider: OpenIdProvider, account: str, launch: str = "patient-123"
) -> TestResponse:
    """The EHR opens the pages; the clinician is signed in at its server; back here."""
    start = client.get("/smart/launch?" + urlencode({"iss": provider.issuer, "launch": launch}))
    assert start.status_code == 303, start.text
    url = start.headers["Location"] + "&" + urlencode({"login_hint": account})
    with requests.Session() as browser:
        for _ in range(10):
            answer = browser.get(url, allow_redirects=False, timeout=10)
            assert answer.status_code in (302, 303), answer.text
            url = urljoin(answer.url, answer.headers["Location"])
            if url.startswith(PUBLIC_URL):
                break
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}")


def test_a_launch_asks_the_ehrs_server_as_smart_says(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    start = client.get("/smart/launch?" + urlencode({"iss": provider.issuer, "launch": "l-1"}))
    target = urlsplit(start.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    configuration = requests.get(
        f"{provider.issuer}/.well-known/smart-configuration", timeout=10
    ).json()
    assert (
        f"{target.scheme}://{target.netloc}{target.path}"
        == (configuration["authorization_endpoint"])
    )
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{PUBLIC_URL}/smart/callback"
    assert set(query["scope"].split()) == {"launch", "openid", "fhirUser"}
    assert (query["aud"], query["launch"]) == (provider.issuer, "l-1")
    assert query["code_challenge_method"] == "S256" and len(query["state"]) >= 43


def test_a_launched_clinician_sees_the_patients_screenings_in_the_ehrs_frame(
    client: FlaskClient, provider: OpenIdProvider, store: Store
) -> None:
    for ref in ("123", "456"):
        client.post(
            "/v1/screenings",
            json={"answers": base_answers(), "patient_ref": ref},
            headers=bearer("portal-a"),
        )
    done = launched(client, provider, "dr-jane")
    assert done.status_code == 303
    assert done.headers["Location"] == "/review/?patient_ref=123"
    cookie = done.headers["Set-Cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "Partitioned" in cookie
    page = client.get("/review/?patient_ref=123")
    assert page.status_code == 200
    assert "the patient the EHR opened these pages for" in page.text
    assert page.text.count('class="screening ') == 1
    # The contract's scopes ask for no profile: the person is named by their sub.
    assert "Signed in as <strong>dr-jane</strong>" in page.text and "from the EHR" in page.text
    assert f"frame-ancestors {EHR_ORIGIN};" in page.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in page.headers
    assert ("smart:dr-jane", "sign_in") in {
        (e["actor"], e["action"]) for e in store.audit.entries()
    }


def test_a_patient_who_launches_is_refused(client: FlaskClient, provider: OpenIdProvider) -> None:
    refused = launched(client, provider, "pat-1")
    assert refused.status_code == 403
    assert "These pages are for clinicians" in refused.text
    assert client.get("/review/").status_code == 303


def test_a_launch_without_a_patient_is_refused(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    # A launch context the server gives no patient for.
    assert launched(client, provider, "dr-jane", launch="no-context").status_code == 400
    assert client.get("/review/").status_code == 303


def test_an_unlisted_ehr_gets_a_page_and_no_redirect(client: FlaskClient, app: Flask) -> None:
    answer = client.get("/smart/launch?iss=https://other-ehr.test/fhir&launch=x")
    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert "This EHR can" in answer.text and "open these pages" in answer.text
    # identity-v1.md: refusals are audited.
    assert ("smart:unknown", "launch_refused") in {
        (e["actor"], e["action"]) for e in app_store(app).audit.entries()
    }


def test_aud_is_the_fhir_base_exactly_as_the_ehr_sent_it(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    """SMART: ``aud`` is the ``iss`` of the launch (here with a trailing slash the
    configured base lacks)."""
    sent = provider.issuer + "/"
    start = client.get("/smart/launch?" + urlencode({"iss": sent, "launch": "l-1"}))
    assert start.status_code == 303
    query = {k: v[0] for k, v in parse_qs(urlsplit(start.headers["Location"]).query).items()}
    assert query["aud"] == sent


def test_a_callback_without_its_launch_is_refused(client: FlaskClient) -> None:
    assert client.get("/smart/callback?code=x&state=y").status_code == 400


def test_outside_a_launched_session_no_one_may_frame_the_pages(
    app: Flask, client: FlaskClient, provider: OpenIdProvider
) -> None:
    launched(client, provider, "dr-jane")
    other = FlaskClient(app, use_cookies=True)
    login = other.get("/review/login")
    assert "frame-ancestors 'none'" in login.headers["Content-Security-Policy"]
    assert login.headers["X-Frame-Options"] == "DENY"
    assert "SameSite=None" not in login.headers.get("Set-Cookie", "")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('[{"iss": "ftp://ehr", "client_id": "x"}]', "iss"),
        ('[{"iss": "https://ehr.test/fhir"}]', "client_id"),
        (
            '[{"iss": "https://ehr.test/fhir", "client_id": "x", "frame_ancestors": ["https://a/b"]}]',
            "frame_ancestors",
        ),
        ('[{"iss": "https://ehr.test/fhir", "client_id": "x", "extra": 1}]', "extra"),
    ],
)
def test_a_bad_smart_client_is_refused_naming_the_setting(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        parse_smart_clients(value)
    assert str(refused.value).startswith("SCREENING_SMART_CLIENTS")


def test_smart_clients_need_the_public_url(database_url: str, provider: OpenIdProvider) -> None:
    with (
        pytest.raises(StartupError, match="^SCREENING_PUBLIC_URL"),
        make_app(database_url, SMART_CLIENTS=smart_clients(provider)),
    ):
        pass


@pytest.mark.parametrize("from_smart_ehr", [True, False])
def test_a_card_from_a_launching_ehr_carries_a_smart_link(
    client: FlaskClient, provider: OpenIdProvider, rulebook: Rulebook, from_smart_ehr: bool
) -> None:
    body = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "fhirServer": provider.issuer if from_smart_ehr else "https://other-ehr.test/fhir",
        "context": {"userId": "Practitioner/p-7", "patientId": "123"},
        "prefetch": {
            "questionnaireResponse": questionnaire_response_from_answers(
                base_answers(), rulebook.questionnaire
            )
        },
    }
    response = client.post("/cds-services/lumbar-rfa-screening", json=body, headers=bearer("dr-c"))
    (card,) = response.get_json()["cards"]
    links = [(link["type"], link["url"]) for link in card["links"]]
    assert links[0] == ("absolute", f"{PUBLIC_URL}/review/")
    expected = [("smart", f"{PUBLIC_URL}/smart/launch")] if from_smart_ehr else []
    assert links[1:] == expected


def test_a_public_client_launches_with_pkce_alone(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = {
        "accounts": [{"id": "dr-jane", "fhirUser": "Practitioner/p-7"}],
        "clients": [
            {
                "client_id": "public-app",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [f"{PUBLIC_URL}/smart/callback"],
                "scope": "openid fhirUser launch",
            }
        ],
    }
    with openid_provider(tmp_path_factory.mktemp("public"), config) as server:
        clients = json.dumps([{"iss": server.issuer, "client_id": "public-app"}])
        with make_app(database_url, SMART_CLIENTS=clients, PUBLIC_URL=PUBLIC_URL) as app:
            client = FlaskClient(app, use_cookies=True)
            done = launched(client, server, "dr-jane")
            assert done.status_code == 303, done.text
            assert done.headers["Location"] == "/review/?patient_ref=123"


def test_a_launch_ends_the_session_the_browser_had_and_frames_nothing_until_signed_in(
    app: Flask, client: FlaskClient, provider: OpenIdProvider
) -> None:
    # A clinician signed in with a token follows a link to a launch.
    page = client.get("/review/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    signed_in = client.post(
        "/review/login", data={"token": TOKENS["dr-c"], "csrf_token": token.group(1)}
    )
    assert signed_in.status_code == 303
    client.get("/smart/launch?" + urlencode({"iss": provider.issuer, "launch": "patient-123"}))
    after = client.get("/review/")
    assert after.status_code == 303  # that session ended
    login = client.get("/review/login")
    assert "frame-ancestors 'none'" in login.headers["Content-Security-Policy"]


def test_a_hostile_state_is_a_400_not_a_500(client: FlaskClient, provider: OpenIdProvider) -> None:
    client.get("/smart/launch?" + urlencode({"iss": provider.issuer, "launch": "patient-123"}))
    assert (
        client.get("/smart/callback?" + urlencode({"state": "é", "code": "x"})).status_code == 400
    )
