"""Clinicians sign in to the review pages through a real OpenID provider (oidc-provider under
Node; identity-v1.md part 1). A requests.Session plays the browser at the provider, and the
Flask test client is the browser at the service: each redirect back to the service is
handed from one to the other."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urljoin
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from screening import StartupError
from screening import extension
from screening.services.identity import OidcConfig
from screening.services.identity import OidcSignIn
from screening.services.identity import SignInRefused
from screening.storage.store import Store
from tests.support.app import app_store
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.cds import SigningKey
from tests.support.cds import jwk_set
from tests.support.cds import key_server
from tests.support.cds import rsa_key
from tests.support.oidc import OpenIdProvider
from tests.support.oidc import openid_provider
from tests.support.serving import serving

#: The service as the provider knows it: the test client's host.
PUBLIC_URL = "http://localhost"
CLIENT_ID = "screening-review"
CLIENT_SECRET = "review-secret-for-tests"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

ACCOUNTS = [
    {
        "id": "dr-jane",
        "name": "Dr Jane Carter",
        "email": "jane.carter@hospital.test",
        "roles": ["clinician", "staff"],
    },
    {"id": "nurse-bo", "name": "Bo Lind", "roles": ["nurse"]},
    {"id": "dr-kim", "preferred_username": "kim.p", "roles": ["spine-clinician"]},
]


def review_client(**more: Any) -> dict[str, Any]:
    """The service registered at the provider as a confidential web client."""
    return {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [f"{PUBLIC_URL}/review/oidc/callback"],
        **more,
    }


@pytest.fixture(scope="module")
def live_port() -> int:
    """A free loopback port where a test serves the app for the provider's back-channel."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, live_port: int) -> Iterator[OpenIdProvider]:
    client = review_client(
        post_logout_redirect_uris=[f"{PUBLIC_URL}/review/login"],
        backchannel_logout_uri=f"http://127.0.0.1:{live_port}/review/oidc/backchannel-logout",
        backchannel_logout_session_required=True,
    )
    config = {"accounts": ACCOUNTS, "clients": [client]}
    with openid_provider(tmp_path_factory.mktemp("oidc"), config) as running:
        yield running


def oidc_settings(provider: OpenIdProvider, **changes: Any) -> dict[str, Any]:
    return {
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_CLINICIAN_ROLES": "clinician, spine-clinician",
        "OIDC_NAME": "Hospital login",
        "PUBLIC_URL": PUBLIC_URL,
        **changes,
    }


@pytest.fixture
def app(database_url: str, provider: OpenIdProvider) -> Iterator[Flask]:
    with make_app(database_url, **oidc_settings(provider)) as made:
        yield made


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return FlaskClient(app, use_cookies=True)


def at_provider(browser: requests.Session, url: str) -> str:
    """Follow the provider's redirects until one leads back to the service; return it."""
    for _ in range(10):
        answer = browser.get(url, allow_redirects=False, timeout=10)
        assert answer.status_code in (302, 303), answer.text
        url = urljoin(answer.url, answer.headers["Location"])
        if url.startswith(PUBLIC_URL):
            return url
    raise AssertionError("the provider never sent the browser back")


def local(url: str) -> str:
    """A service URL as the test client asks for it."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def callback_url(client: FlaskClient, browser: requests.Session, account: str) -> str:
    """Start signing in at the service and sign in at the provider as ``account`` (its
    login_hint stands for the person choosing their account); the URL it sends back."""
    start = client.get("/review/login/oidc?next=/review/")
    assert start.status_code == 303
    location = start.headers["Location"]
    assert not location.startswith(PUBLIC_URL)
    return at_provider(browser, location + "&" + urlencode({"login_hint": account}))


@pytest.fixture
def browser() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def sign_in(client: FlaskClient, browser: requests.Session, account: str) -> TestResponse:
    return client.get(local(callback_url(client, browser, account)))


def browser_issuer(client: FlaskClient) -> str:
    """The issuer the app under test signs people in at."""
    assert client.application is not None
    identity = extension.of(client.application).identity
    assert identity is not None
    return identity.config.issuer


def test_a_clinician_signs_in_and_their_review_names_them(
    client: FlaskClient, browser: requests.Session, store: Store
) -> None:
    created = client.post(
        "/v1/screenings", json={"answers": base_answers()}, headers=bearer("portal-a")
    )
    screening_id = created.get_json()["id"]
    login = client.get("/review/login")
    assert "Sign in with Hospital login" in login.text
    # With OIDC on, the token form is not offered unless asked for.
    assert 'name="token"' not in login.text
    done = sign_in(client, browser, "dr-jane")
    assert done.status_code == 303 and done.headers["Location"] == "/review/"
    (signed_in,) = [e for e in store.audit.entries() if e["action"] == "sign_in"]
    assert signed_in["actor"] == "oidc:dr-jane" and signed_in["sid"]  # the provider's session
    page = client.get(f"/review/{screening_id}")
    assert page.status_code == 200
    assert "Dr Jane Carter" in page.text and "through your organization" in page.text
    # Signing out sends the browser on to the provider: its form may lead there, no further.
    policy = page.headers["Content-Security-Policy"]
    origin = "http://" + urlsplit(browser_issuer(client)).netloc
    assert f"form-action 'self' {origin};" in policy
    token = _CSRF.search(page.text)
    assert token is not None
    reviewed = client.post(
        f"/review/{screening_id}/review", data={"note": "Seen.", "csrf_token": token.group(1)}
    )
    assert reviewed.status_code == 303
    history = client.get(f"/v1/screenings/{screening_id}", headers=bearer("dr-c")).get_json()
    assert [(h["by"], h["by_id"]) for h in history["review"]["history"]] == [
        ("Dr Jane Carter", "oidc:dr-jane")
    ]
    actions = {(e["actor"], e["action"]) for e in store.audit.entries()}
    assert {
        ("oidc:dr-jane", "sign_in"),
        ("oidc:dr-jane", "read"),
        ("oidc:dr-jane", "review"),
    } <= actions


def test_a_role_from_the_list_signs_in_and_a_person_without_one_is_refused(
    client: FlaskClient, browser: requests.Session, store: Store
) -> None:
    refused = sign_in(client, browser, "nurse-bo")
    assert refused.status_code == 403
    assert "does not have the clinician role" in refused.text
    assert client.get("/review/").status_code == 303  # no session: back to sign-in
    (refusal,) = [e for e in store.audit.entries() if e["action"] == "sign_in_refused"]
    # identity-v1.md: refusals are audited with the actor and the provider's session.
    assert refusal["actor"] == "oidc:nurse-bo" and refusal["sid"]
    # Another person, whose role is the second one listed; named by preferred_username.
    with requests.Session() as other:
        assert sign_in(client, other, "dr-kim").status_code == 303
    assert "kim.p" in client.get("/review/").text


def test_a_callback_is_used_once_and_only_by_the_browser_that_started_it(
    app: Flask, client: FlaskClient, browser: requests.Session
) -> None:
    url = callback_url(client, browser, "dr-jane")
    # Another browser (no pending sign-in of its own) can't finish it.
    stranger = FlaskClient(app, use_cookies=True)
    assert stranger.get(local(url)).status_code == 400
    assert client.get(local(url)).status_code == 303
    # The same answer again: its state was used.
    client.post("/review/logout", data={"csrf_token": _csrf(client)})
    assert client.get(local(url)).status_code == 400


def _csrf(client: FlaskClient) -> str:
    found = _CSRF.search(client.get("/review/").text)
    assert found is not None
    return found.group(1)


def _with(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return f"{parts.path}?{urlencode(query)}"


@pytest.mark.parametrize(
    "changes",
    [
        {"state": None},
        {"state": "not-the-state"},
        {"state": "\u00e9t\u00e9"},
        {"iss": "https://another-issuer.test"},
        {"iss": None},
        {"code": None},
        {"code": "made-up-code"},
        {"error": "access_denied"},
    ],
    ids=[
        "no-state",
        "other-state",
        "non-ascii-state",
        "other-iss",
        "no-iss",
        "no-code",
        "bad-code",
        "error",
    ],
)
def test_a_callback_that_fails_a_check_starts_no_session(
    client: FlaskClient, browser: requests.Session, store: Store, changes: dict[str, str | None]
) -> None:
    url = callback_url(client, browser, "dr-jane")
    answer = client.get(_with(url, **changes))
    assert answer.status_code == 400
    assert "Sign-in did not finish" in answer.text
    assert client.get("/review/").status_code == 303
    assert ("oidc:unknown", "sign_in_refused") in {
        (e["actor"], e["action"]) for e in store.audit.entries()
    }


def test_signing_out_ends_the_session_and_signs_out_at_the_provider(
    client: FlaskClient, browser: requests.Session, provider: OpenIdProvider
) -> None:
    sign_in(client, browser, "dr-jane")
    out = client.post("/review/logout", data={"csrf_token": _csrf(client)})
    assert out.status_code == 303
    ends = urlsplit(out.headers["Location"])
    metadata = provider.metadata()
    assert f"{ends.scheme}://{ends.netloc}{ends.path}" == metadata["end_session_endpoint"]
    query = parse_qs(ends.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["post_logout_redirect_uri"] == [f"{PUBLIC_URL}/review/login"]
    hint = jwt.decode(query["id_token_hint"][0], options={"verify_signature": False})
    assert hint["sub"] == "dr-jane"
    assert client.get("/review/").status_code == 303


def _logout_at_the_provider(browser: requests.Session, provider: OpenIdProvider, hint: str) -> None:
    """Sign out at the provider, as the person would on another site: its logout page
    submits a confirmation form, then the provider tells every client of the session."""
    query = urlencode(
        {
            "id_token_hint": hint,
            "client_id": CLIENT_ID,
            "post_logout_redirect_uri": f"{PUBLIC_URL}/review/login",
        }
    )
    page = browser.get(f"{provider.metadata()['end_session_endpoint']}?{query}", timeout=10)
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    inputs = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    assert action is not None and "xsrf" in inputs, page.text
    done = browser.post(urljoin(page.url, action.group(1)), data=inputs, allow_redirects=False)
    assert done.status_code in (302, 303)


def test_signing_out_at_the_provider_ends_the_session_here(
    app: Flask,
    client: FlaskClient,
    browser: requests.Session,
    provider: OpenIdProvider,
    live_port: int,
    store: Store,
) -> None:
    with serving(make_server("127.0.0.1", live_port, app, threaded=True)):
        sign_in(client, browser, "dr-jane")
        assert client.get("/review/").status_code == 200
        with client.session_transaction() as cookie:
            hint = cookie["oidc_id_token"]
        _logout_at_the_provider(browser, provider, hint)
        deadline = time.monotonic() + 10
        while client.get("/review/").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/review/").status_code == 303
    assert ("oidc:dr-jane", "backchannel_logout") in {
        (e["actor"], e["action"]) for e in store.audit.entries()
    }


def test_the_token_form_can_be_offered_beside_oidc(
    database_url: str, provider: OpenIdProvider
) -> None:
    with make_app(database_url, **oidc_settings(provider, REVIEW_TOKEN_SIGN_IN="1")) as both:
        page = both.test_client().get("/review/login").text
    assert "Sign in with Hospital login" in page and 'name="token"' in page


def test_a_provider_that_is_down_gives_a_503_page_and_the_api_works(
    database_url: str, provider: OpenIdProvider
) -> None:
    down = oidc_settings(provider, OIDC_ISSUER="http://127.0.0.1:9")
    with make_app(database_url, **down) as app:
        client = FlaskClient(app, use_cookies=True)
        started = client.get("/review/login/oidc")
        assert started.status_code == 503
        assert "Sign-in is not available right now" in started.text
        created = client.post(
            "/v1/screenings", json={"answers": base_answers()}, headers=bearer("portal-a")
        )
        assert created.status_code == 201
        assert len(app_store(app).audit.entries()) == 1


@pytest.fixture(scope="module")
def userinfo_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    """A provider that keeps the roles claim (and the name) out of the ID token: only its
    UserInfo endpoint gives them (oidc-provider's default, conformIdTokenClaims, for the
    claims of scopes other than openid; roles come with a scope of their own)."""
    config = {
        "accounts": ACCOUNTS,
        "conformIdTokenClaims": True,
        "claims": {
            "openid": ["sub"],
            "profile": ["name", "preferred_username"],
            "email": ["email"],
            "roles": ["roles"],
            "sid": None,
        },
        "clients": [review_client()],
    }
    with openid_provider(tmp_path_factory.mktemp("oidc-userinfo"), config) as running:
        yield running


def test_roles_only_in_userinfo_are_read_from_it(
    database_url: str, userinfo_provider: OpenIdProvider, browser: requests.Session
) -> None:
    """identity-v1.md: the roles claim is the ID token's "(or UserInfo)"."""
    settings = oidc_settings(userinfo_provider, OIDC_SCOPES="openid profile email roles")
    with make_app(database_url, **settings) as app:
        client = FlaskClient(app, use_cookies=True)
        signed_in = sign_in(client, browser, "dr-jane")
        assert signed_in.status_code == 303, signed_in.text
        # The name, too, came from UserInfo alone.
        assert "Dr Jane Carter" in client.get("/review/").text
        with requests.Session() as other:
            nurse = FlaskClient(app, use_cookies=True)
            assert sign_in(nurse, other, "nurse-bo").status_code == 403


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"PUBLIC_URL": ""}, "SCREENING_PUBLIC_URL"),
        ({"OIDC_CLIENT_SECRET": ""}, "SCREENING_OIDC_CLIENT_SECRET"),
        ({"OIDC_CLINICIAN_ROLES": " , "}, "SCREENING_OIDC_CLINICIAN_ROLES"),
        ({"OIDC_SCOPES": "profile email"}, "SCREENING_OIDC_SCOPES"),
        ({"OIDC_ROLES_CLAIM": "realm access"}, "SCREENING_OIDC_ROLES_CLAIM"),
        # Sign-in keeps its state, nonce and PKCE verifier in the signed cookie.
        ({"SECRET_KEY": ""}, "SCREENING_SECRET_KEY"),
    ],
)
def test_an_incomplete_oidc_setting_stops_start_up_naming_it(
    database_url: str, provider: OpenIdProvider, changes: dict[str, str], message: str
) -> None:
    with (
        pytest.raises(StartupError, match=f"^{message}"),
        make_app(database_url, **oidc_settings(provider, **changes)),
    ):
        pass


# --- the ID token's checks, on tokens no provider would issue ------------------------------


ISSUER = "https://idp.hospital.test"


@pytest.fixture
def signer() -> SigningKey:
    return rsa_key("idp-1", "RS256")


def sign_in_at(issuer: str, roles_claim: str = "realm_access.roles") -> OidcSignIn:
    """The service's sign-in at ``issuer``, clinicians by ``roles_claim``."""
    config = OidcConfig(
        issuer=issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scopes="openid",
        roles_claim=roles_claim,
        clinician_roles=frozenset({"clinician"}),
        name="Hospital",
    )
    return OidcSignIn(config, f"{PUBLIC_URL}/review/oidc/callback")


@pytest.fixture
def checker(signer: SigningKey, monkeypatch: pytest.MonkeyPatch) -> Iterator[OidcSignIn]:
    with key_server(jwk_set(signer)) as keys:
        checking = sign_in_at(ISSUER)
        metadata = {"issuer": ISSUER, "jwks_uri": keys.url}
        monkeypatch.setattr(checking, "metadata", lambda: metadata)
        yield checking


def id_token(key: SigningKey, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "p-1",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": "the-nonce",
        "realm_access": {"roles": ["clinician"]},
        **changes,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid})


def test_a_valid_id_token_names_the_person_through_a_dotted_roles_claim(
    checker: OidcSignIn, signer: SigningKey
) -> None:
    claims = checker.check_id_token(id_token(signer, azp=CLIENT_ID), "the-nonce")
    person = checker.person(claims, "oidc")
    assert (person.name, person.role, person.display_name) == ("oidc:p-1", "clinician", "p-1")


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": "another-nonce"},
        {"nonce": None},
        {"aud": "another-client"},
        {"azp": "another-client"},
        {"iss": "https://elsewhere.test"},
        {"exp": int(time.time()) - 120},
        {"iat": int(time.time()) - 600},
        {"sub": None},
    ],
    ids=["nonce", "no-nonce", "aud", "azp", "iss", "expired", "old-iat", "no-sub"],
)
def test_an_id_token_that_fails_a_check_is_refused(
    checker: OidcSignIn, signer: SigningKey, changes: dict[str, Any]
) -> None:
    with pytest.raises(SignInRefused):
        checker.check_id_token(id_token(signer, **changes), "the-nonce")


def test_an_id_token_not_signed_by_the_providers_keys_is_refused(checker: OidcSignIn) -> None:
    with pytest.raises(SignInRefused):
        checker.check_id_token(id_token(rsa_key("idp-1", "RS256")), "the-nonce")
    body = jwt.decode(id_token(rsa_key()), options={"verify_signature": False})
    shared = jwt.encode(body, "a-shared-secret-of-enough-length-123", algorithm="HS256")
    with pytest.raises(SignInRefused):
        checker.check_id_token(shared, "the-nonce")


def test_metadata_without_the_endpoints_a_sign_in_uses_is_not_used(checker: OidcSignIn) -> None:
    """A provider whose metadata lacks one is unavailable (503), never a 500."""
    complete = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
    }
    assert checker.metadata_usable(complete)
    for missing in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert not checker.metadata_usable({k: v for k, v in complete.items() if k != missing})
    assert not checker.metadata_usable({**complete, "issuer": "https://elsewhere.test"})


def test_keys_the_provider_moved_are_found_by_reading_its_metadata_again(
    signer: SigningKey,
) -> None:
    """identity-v1.md: the metadata is refetched when a token names an unknown ``kid``
    (here the provider moved its keys to a new ``jwks_uri``); made-up ``kid``s right after
    fetch nothing more."""
    retired = rsa_key("retired")
    with (
        key_server(jwk_set(retired)) as old_keys,
        key_server(jwk_set(signer)) as new_keys,
        key_server({}) as discovery,
    ):
        issuer = discovery.url.removesuffix("/jwks.json")
        endpoints = {
            "authorization_endpoint": f"{issuer}/auth",
            "token_endpoint": f"{issuer}/token",
        }
        discovery.keys = {"issuer": issuer, "jwks_uri": old_keys.url, **endpoints}
        checking = sign_in_at(issuer, roles_claim="roles")
        checking.metadata()
        discovery.keys = {"issuer": issuer, "jwks_uri": new_keys.url, **endpoints}
        claims = checking.check_id_token(id_token(signer, iss=issuer), "the-nonce")
        assert claims["sub"] == "p-1"
        assert discovery.fetches == 2
        with pytest.raises(SignInRefused):
            checking.check_id_token(id_token(rsa_key("made-up"), iss=issuer), "the-nonce")
        assert discovery.fetches == 2


def test_roles_outside_the_list_are_a_403(checker: OidcSignIn, signer: SigningKey) -> None:
    claims = checker.check_id_token(
        id_token(signer, realm_access={"roles": ["nurse"]}), "the-nonce"
    )
    with pytest.raises(SignInRefused) as refused:
        checker.person(claims, "oidc")
    assert refused.value.status == 403 and refused.value.subject == "oidc:p-1"


# --- back-channel logout tokens no provider would send --------------------------------------


@pytest.fixture
def local_provider(
    app: Flask, provider: OpenIdProvider, signer: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The app's provider with its keys served here, so tests can sign logout tokens."""
    identity = extension.of(app).identity
    assert identity is not None
    with key_server(jwk_set(signer)) as keys:
        metadata = {"issuer": provider.issuer, "jwks_uri": keys.url}
        monkeypatch.setattr(identity, "metadata", lambda: metadata)
        monkeypatch.setattr(identity, "_keys", None)
        yield


def logout_token(
    provider: OpenIdProvider, key: SigningKey, typ: str = "logout+jwt", **changes: Any
) -> str:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 120,
        "jti": f"logout-{time.monotonic_ns()}",
        "sid": "session-1",
        "sub": "dr-jane",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        **changes,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": typ})


def _backchannel(client: FlaskClient, token: str) -> TestResponse:
    return client.post("/review/oidc/backchannel-logout", data={"logout_token": token})


@pytest.mark.usefixtures("local_provider")
def test_a_logout_token_is_taken_once(
    client: FlaskClient, provider: OpenIdProvider, signer: SigningKey, store: Store
) -> None:
    token = logout_token(provider, signer)
    first = _backchannel(client, token)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    logged_out = [e for e in store.audit.entries() if e["action"] == "backchannel_logout"]
    assert [(e["actor"], e["sid"]) for e in logged_out] == [("oidc:dr-jane", "session-1")]
    again = _backchannel(client, token)
    assert again.status_code == 400 and again.get_json() == {"error": "invalid_request"}


@pytest.mark.usefixtures("local_provider")
@pytest.mark.parametrize(
    ("typ", "changes"),
    [
        ("JWT", {}),
        ("logout+jwt", {"sid": None, "sub": None}),
        ("logout+jwt", {"nonce": "n"}),
        ("logout+jwt", {"events": {"other": {}}}),
        ("logout+jwt", {"aud": "another-client"}),
        ("logout+jwt", {"iss": "https://elsewhere.test"}),
        ("logout+jwt", {"iat": int(time.time()) - 900}),
        ("logout+jwt", {"jti": None}),
    ],
    ids=["typ", "no-sid-or-sub", "nonce", "events", "aud", "iss", "old", "no-jti"],
)
def test_a_bad_logout_token_ends_nothing(
    client: FlaskClient,
    provider: OpenIdProvider,
    signer: SigningKey,
    typ: str,
    changes: dict[str, Any],
) -> None:
    answer = _backchannel(client, logout_token(provider, signer, typ, **changes))
    assert answer.status_code == 400 and answer.get_json() == {"error": "invalid_request"}


@pytest.mark.usefixtures("local_provider")
def test_a_logout_token_not_signed_by_the_provider_or_not_a_jwt_is_refused(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    assert (
        _backchannel(client, logout_token(provider, rsa_key("idp-1", "RS256"))).status_code == 400
    )
    assert _backchannel(client, "not-a-token").status_code == 400
    assert client.post("/review/oidc/backchannel-logout").status_code == 400
