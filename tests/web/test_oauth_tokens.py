"""Machine clients call the API with OAuth access tokens (identity-v1.md part 3): tokens from a
real OpenID provider (oidc-provider under Node, client credentials, RFC 9068 JWTs), and, for
what a provider would never issue, tokens signed here by a key an issuer publishes."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from screening.services.oauth import OAuthIssuer
from screening.services.oauth import parse_oauth_issuers
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import app_store
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.cds import KeyServer
from tests.support.cds import SigningKey
from tests.support.cds import ec_key
from tests.support.cds import jwk_set
from tests.support.cds import key_server
from tests.support.cds import rsa_key
from tests.support.oidc import API_AUDIENCE
from tests.support.oidc import API_SERVER
from tests.support.oidc import CLINICIAN_SCOPE
from tests.support.oidc import OTHER_SCOPE
from tests.support.oidc import PORTAL_SCOPE
from tests.support.oidc import OpenIdProvider
from tests.support.oidc import machine_client
from tests.support.oidc import openid_provider

#: An issuer whose tokens the tests sign themselves (its keys on a local JWK Set server).
LOCAL_ISSUER = "https://idp.hospital.test"
SCOPES = {PORTAL_SCOPE: "portal", CLINICIAN_SCOPE: "clinician"}

#: Portal clients, a service with both scopes, and one with a scope that gives no role.
CLIENTS = {
    "portal-app": ("portal-secret", PORTAL_SCOPE),
    "other-portal": ("other-secret", PORTAL_SCOPE),
    "triage-bot": ("bot-secret", f"{PORTAL_SCOPE} {CLINICIAN_SCOPE}"),
    "reports": ("reports-secret", OTHER_SCOPE),
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    config = {
        "clients": [machine_client(cid, secret, scope) for cid, (secret, scope) in CLIENTS.items()],
        "resourceServers": [
            API_SERVER,
            # Another API of the same hospital: its tokens are not for this one.
            {**API_SERVER, "identifier": "https://billing.test/api", "default": False},
        ],
    }
    with openid_provider(tmp_path_factory.mktemp("oidc"), config) as running:
        yield running


@pytest.fixture
def local_key() -> SigningKey:
    return ec_key("local-1", "ES256")


@pytest.fixture
def local_keys(local_key: SigningKey) -> Iterator[KeyServer]:
    with key_server(jwk_set(local_key)) as server:
        yield server


@pytest.fixture
def app(database_url: str, provider: OpenIdProvider, local_keys: KeyServer) -> Iterator[Flask]:
    issuers = [
        {"issuer": provider.issuer, "audience": API_AUDIENCE, "scopes": SCOPES},
        {
            "issuer": LOCAL_ISSUER,
            "audience": API_AUDIENCE,
            "scopes": SCOPES,
            "jwks_url": local_keys.url,
        },
    ]
    with make_app(database_url, OAUTH_ISSUERS=json.dumps(issuers)) as made:
        yield made


def token_of(provider: OpenIdProvider, client_id: str, scope: str | None = None) -> str:
    """An access token for a client: all its scopes, or ``scope``."""
    secret, scopes = CLIENTS[client_id]
    return provider.client_credentials(client_id, secret, scope or scopes)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def local_token(key: SigningKey, typ: str = "at+jwt", **changes: Any) -> str:
    """An access token of LOCAL_ISSUER signed by ``key``: valid unless ``changes`` say."""
    now = int(time.time())
    body = {
        "iss": LOCAL_ISSUER,
        "sub": "ward-app",
        "client_id": "ward-app",
        "aud": API_AUDIENCE,
        "scope": PORTAL_SCOPE,
        "iat": now,
        "exp": now + 300,
        "jti": f"t-{now}",
        **changes,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": typ})


def post(client: FlaskClient, headers: dict[str, str]) -> Any:
    return client.post("/v1/screenings", json={"answers": base_answers()}, headers=headers)


@BOTH_DATABASES
def test_a_portal_client_stores_and_reads_only_its_own_screenings(
    client: FlaskClient, store: Store, provider: OpenIdProvider
) -> None:
    mine = token_of(provider, "portal-app")
    created = post(client, auth(mine))
    assert created.status_code == 201, created.get_json()
    screening_id = created.get_json()["id"]
    assert client.get(f"/v1/screenings/{screening_id}", headers=auth(mine)).status_code == 200
    # Another portal client, and a portal key, do not see it: the same 404 as no screening.
    theirs = token_of(provider, "other-portal")
    assert client.get(f"/v1/screenings/{screening_id}", headers=auth(theirs)).status_code == 404
    assert (
        client.get(f"/v1/screenings/{screening_id}", headers=bearer("portal-a")).status_code == 404
    )
    # A portal client may not list; a client with the clinician scope may, and sees it.
    assert client.get("/v1/screenings", headers=auth(mine)).status_code == 403
    bot = token_of(provider, "triage-bot")
    listed = client.get("/v1/screenings", headers=auth(bot))
    assert [item["id"] for item in listed.get_json()["items"]] == [screening_id]
    stored = store.screenings.get(screening_id)
    assert stored is not None and stored.created_by == "oauth:portal-app"
    actors = {(e["actor"], e["action"]) for e in store.audit.entries(screening_id)}
    assert {("oauth:portal-app", "create"), ("oauth:portal-app", "read")} <= actors
    assert ("oauth:triage-bot", "list") in {
        (e["actor"], e["action"]) for e in store.audit.entries()
    }


def test_the_highest_role_a_tokens_scopes_give_is_its_role(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    # The same client asking for its portal scope alone is a portal caller.
    portal_only = token_of(provider, "triage-bot", PORTAL_SCOPE)
    assert client.get("/v1/screenings", headers=auth(portal_only)).status_code == 403
    both = token_of(provider, "triage-bot")
    assert client.get("/v1/screenings", headers=auth(both)).status_code == 200


def test_a_valid_token_whose_scopes_give_no_role_is_403(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    token = token_of(provider, "reports")
    response = post(client, auth(token))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"


def test_api_keys_keep_working_beside_tokens(client: FlaskClient, provider: OpenIdProvider) -> None:
    assert post(client, bearer("portal-a")).status_code == 201
    assert post(client, auth(token_of(provider, "portal-app"))).status_code == 201
    listed = client.get("/v1/screenings", headers=bearer("dr-c")).get_json()["items"]
    assert len(listed) == 2


def test_idempotency_keys_are_scoped_to_the_client(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    headers = {**auth(token_of(provider, "portal-app")), "Idempotency-Key": "order-1"}
    first = client.post("/v1/screenings", json={"answers": base_answers()}, headers=headers)
    again = client.post("/v1/screenings", json={"answers": base_answers()}, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    other = {**auth(token_of(provider, "other-portal")), "Idempotency-Key": "order-1"}
    theirs = client.post("/v1/screenings", json={"answers": base_answers()}, headers=other)
    assert theirs.status_code == 201 and theirs.get_json()["id"] != first.get_json()["id"]


def _refused(client: FlaskClient, token: str) -> None:
    response = post(client, auth(token))
    assert response.status_code == 401, response.get_json()
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="screening", error="invalid_token"'
    )
    # A bare problem: nothing about which check failed.
    assert response.get_json()["detail"] == "The token is not valid."


def test_the_cds_service_takes_a_clinician_clients_token(
    client: FlaskClient, provider: OpenIdProvider
) -> None:
    """identity-v1.md: every route that takes a key takes an access token, the CDS service's
    too (beside the EHR's own signed JWT)."""
    call = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": "example"},
    }
    service = "/cds-services/lumbar-rfa-screening"
    clinician = auth(token_of(provider, "triage-bot"))
    answered = client.post(service, json=call, headers=clinician)
    assert answered.status_code == 200, answered.get_json()
    assert answered.get_json() == {"cards": []}
    feedback = {
        "feedback": [
            {
                "card": "0f6b4f3c-1bd4-4f0a-9c57-40f0ad4ff0a4",
                "outcome": "accepted",
                "outcomeTimestamp": "2026-12-07T09:30:00Z",
            }
        ]
    }
    received = client.post(f"{service}/feedback", json=feedback, headers=clinician)
    assert received.status_code == 200, received.get_json()
    # A portal client's token is a caller the route knows, in the wrong role.
    portal = client.post(service, json=call, headers=auth(token_of(provider, "portal-app")))
    assert portal.status_code == 403


def test_a_token_for_another_api_is_refused(client: FlaskClient, provider: OpenIdProvider) -> None:
    secret, _ = CLIENTS["portal-app"]
    metadata = provider.metadata()
    response = requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "client_credentials", "resource": "https://billing.test/api"},
        auth=("portal-app", secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    _refused(client, response.json()["access_token"])


def test_a_tampered_token_is_refused(client: FlaskClient, provider: OpenIdProvider) -> None:
    header, payload, signature = token_of(provider, "portal-app").split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["client_id"] = "other-portal"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    _refused(client, f"{header}.{forged}.{signature}")


def test_a_locally_signed_token_is_taken_when_valid(
    client: FlaskClient, local_key: SigningKey, store: Store
) -> None:
    created = post(client, auth(local_token(local_key)))
    assert created.status_code == 201
    stored = store.screenings.get(created.get_json()["id"])
    assert stored is not None and stored.created_by == "oauth:ward-app"


def test_a_token_without_client_id_names_its_caller_by_sub(
    client: FlaskClient, local_key: SigningKey, store: Store
) -> None:
    """identity-v1.md: the caller is ``oauth:<client_id>``, else ``oauth:<sub>``."""
    token = local_token(local_key, client_id=None, sub="ward-app-2")
    created = post(client, auth(token))
    assert created.status_code == 201
    stored = store.screenings.get(created.get_json()["id"])
    assert stored is not None and stored.created_by == "oauth:ward-app-2"
    # Portal isolation holds under that name: another client does not see it.
    other = client.get(f"/v1/screenings/{stored.id}", headers=auth(local_token(local_key)))
    assert other.status_code == 404
    # An unusable client_id is refused even when sub would do.
    _refused(client, local_token(local_key, client_id="x" * 80, sub="ward-app-2"))
    # application/at+jwt is the same type; clock skew of a minute is allowed.
    skewed = local_token(local_key, typ="application/at+jwt", nbf=int(time.time()) + 50)
    assert post(client, auth(skewed)).status_code == 201
    expired_within_skew = local_token(local_key, exp=int(time.time()) - 30)
    assert post(client, auth(expired_within_skew)).status_code == 201


@pytest.mark.parametrize(
    ("typ", "changes"),
    [
        ("JWT", {}),  # an ID token or any other JWT: not an access token
        ("at+jwt", {"exp": -120}),  # expired beyond the skew
        ("at+jwt", {"nbf": 120}),  # not yet valid
        ("at+jwt", {"aud": "https://billing.test/api"}),
        ("at+jwt", {"iss": "https://elsewhere.test"}),  # no configured issuer
        ("at+jwt", {"exp": None}),  # no expiry
        ("at+jwt", {"client_id": None, "sub": None}),  # nobody to name
        ("at+jwt", {"client_id": None, "sub": "y" * 80}),  # sub, too long to record
        ("at+jwt", {"client_id": "x" * 80}),  # a name too long to record
    ],
    ids=[
        "typ",
        "expired",
        "not-yet",
        "audience",
        "issuer",
        "no-exp",
        "no-client",
        "long-sub",
        "long-id",
    ],
)
def test_a_token_that_fails_a_check_is_a_bare_401(
    client: FlaskClient, local_key: SigningKey, typ: str, changes: dict[str, Any]
) -> None:
    now = int(time.time())
    timed = {k: now + v if k in ("exp", "nbf") and v is not None else v for k, v in changes.items()}
    _refused(client, local_token(local_key, typ=typ, **timed))


def test_a_shared_secret_signature_or_an_unknown_key_is_refused(
    client: FlaskClient, local_key: SigningKey
) -> None:
    body = json.loads(jwt.utils.base64url_decode(local_token(local_key).split(".")[1]))
    hs = jwt.encode(
        body,
        "a-shared-secret-of-enough-length-123",
        algorithm="HS256",
        headers={"kid": local_key.kid, "typ": "at+jwt"},
    )
    _refused(client, hs)
    _refused(client, local_token(ec_key("not-published", "ES256")))


def test_a_key_the_issuer_adds_later_is_found_by_one_refetch(
    client: FlaskClient, local_key: SigningKey, local_keys: KeyServer
) -> None:
    # identity-v1.md: one refetch on an unknown kid, even right after the set was fetched.
    assert post(client, auth(local_token(local_key))).status_code == 201
    fetched = local_keys.fetches
    rotated = rsa_key("local-2", "RS256")
    local_keys.keys = jwk_set(local_key, rotated)
    assert post(client, auth(local_token(rotated))).status_code == 201
    assert local_keys.fetches == fetched + 1


def test_made_up_kids_do_not_refetch_the_key_set_on_every_request(
    client: FlaskClient, local_key: SigningKey, local_keys: KeyServer
) -> None:
    assert post(client, auth(local_token(local_key))).status_code == 201
    fetched = local_keys.fetches
    for n in range(5):
        _refused(client, local_token(ec_key(f"made-up-{n}", "ES256")))
    # The first unknown kid fetches the set again; the next, within the pause, fetch nothing.
    assert local_keys.fetches == fetched + 1


def test_a_jwt_is_never_tried_as_an_api_key(client: FlaskClient, local_key: SigningKey) -> None:
    # Even with no issuer configured a JWT is refused as a token, not looked up as a key.
    with make_app("sqlite://", OAUTH_ISSUERS="") as plain:
        response = plain.test_client().post(
            "/v1/screenings", json={"answers": base_answers()}, headers=auth(local_token(local_key))
        )
    assert response.status_code == 401


def test_an_issuer_that_does_not_answer_is_503_and_keys_still_work(
    database_url: str, tmp_path: Path, local_key: SigningKey
) -> None:
    # Port 9 (discard) on loopback: nothing listens, the metadata fetch fails at once.
    down = [
        {
            "issuer": LOCAL_ISSUER.replace("https://idp.hospital.test", "http://127.0.0.1:9"),
            "audience": API_AUDIENCE,
            "scopes": SCOPES,
        }
    ]
    with make_app(database_url, OAUTH_ISSUERS=json.dumps(down)) as app:
        client = app.test_client()
        token = local_token(local_key, iss="http://127.0.0.1:9")
        response = post(client, auth(token))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        assert post(client, bearer("portal-a")).status_code == 201
        assert len(app_store(app).audit.entries()) == 1


def test_no_token_reaches_the_logs(
    client: FlaskClient, provider: OpenIdProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = token_of(provider, "portal-app")
    post(client, auth(good))
    bad = good[:-4] + "AAAA"
    post(client, auth(bad))
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert good not in logged and bad not in logged
    assert good.split(".")[2] not in logged


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not JSON"),
        ('{"issuer": "x"}', "must be a JSON array"),
        ('[{"issuer": "ftp://x", "audience": "a", "scopes": {"s": "portal"}}]', "issuer"),
        ('[{"issuer": "https://x", "scopes": {"s": "portal"}}]', "audience"),
        ('[{"issuer": "https://x", "audience": "a", "scopes": {"s": "admin"}}]', "scope s"),
        ('[{"issuer": "https://x", "audience": "a", "scopes": {}}]', "scopes"),
        ('[{"issuer": "https://x", "audience": "a", "scopes": {"s": "portal"}, "x": 1}]', "x"),
    ],
)
def test_a_bad_issuer_setting_is_refused_naming_it(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        parse_oauth_issuers(value)
    assert str(refused.value).startswith("SCREENING_OAUTH_ISSUERS")


def test_issuers_parse_with_their_scopes() -> None:
    value = [{"issuer": "https://x.test", "audience": "api", "scopes": {"a": "portal"}}]
    assert parse_oauth_issuers(json.dumps(value)) == (
        OAuthIssuer("https://x.test", "api", {"a": "portal"}),
    )
