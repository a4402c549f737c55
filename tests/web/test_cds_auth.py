"""CDS Hooks 2.0 client trust: the JWT an EHR signs each call with, as ehr-v1.md checks it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient

from screening import StartupError
from screening import create_app
from screening import extension
from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from screening.services import cds as cds_service
from screening.storage.tables import cds_token_ids
from tests.support.app import API_KEYS
from tests.support.app import BOTH_DATABASES
from tests.support.app import app_store
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.cds import DISCOVERY_URL
from tests.support.cds import FEEDBACK_URL
from tests.support.cds import ISS
from tests.support.cds import PUBLIC_URL
from tests.support.cds import SigningKey
from tests.support.cds import authorization
from tests.support.cds import claims
from tests.support.cds import client_config
from tests.support.cds import ec_key
from tests.support.cds import jwk_set
from tests.support.cds import key_server
from tests.support.cds import rsa_key
from tests.support.cds import sign

SERVICE = "/cds-services/lumbar-rfa-screening"


@pytest.fixture(scope="module")
def ehr_key() -> SigningKey:
    """The EHR's signing key (RSA, RS384), made for these tests."""
    return rsa_key()


@pytest.fixture(scope="module")
def ehr_ec_key() -> SigningKey:
    """A second key of the EHR's set (EC, ES384)."""
    return ec_key()


@pytest.fixture
def ehr_app(database_url: str, ehr_key: SigningKey, ehr_ec_key: SigningKey) -> Iterator[Flask]:
    """The app trusting one EHR whose JWK Set is given inline."""
    config = client_config(jwks=jwk_set(ehr_key, ehr_ec_key), fhir_servers=[])
    with make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as app:
        yield app


@pytest.fixture
def ehr(ehr_app: Flask) -> FlaskClient:
    """A client of the app that trusts the EHR."""
    return ehr_app.test_client()


def hook_body(rulebook: Rulebook, answers: dict[str, Any]) -> dict[str, Any]:
    """A patient-view request whose prefetch holds one response."""
    resource = questionnaire_response_from_answers(answers, rulebook.questionnaire)
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/1", "patientId": "1288992"},
        "prefetch": {"questionnaireResponse": resource},
    }


def assert_refused(response: Any) -> None:
    """A bare 401: the same words whatever check failed."""
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == "The token is not valid."
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="screening", error="invalid_token"'
    )


def test_a_signed_call_gets_its_card_and_the_log_names_the_issuer(
    ehr: FlaskClient,
    ehr_key: SigningKey,
    ehr_ec_key: SigningKey,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = hook_body(rulebook, valid_answers)
    for key in (ehr_key, ehr_ec_key):
        token = sign(key)
        response = ehr.post(SERVICE, json=body, headers=authorization(token))
        assert response.status_code == 200, response.get_json()
        assert len(response.get_json()["cards"]) == 1
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if '"screening.access"' in line]
    assert [line["key"] for line in lines] == [ISS, ISS]
    assert token not in out


def test_the_discovery_and_feedback_urls_are_their_own_audience(
    ehr: FlaskClient, ehr_key: SigningKey
) -> None:
    assert ehr.get("/cds-services").status_code == 200
    response = ehr.get("/cds-services", headers=authorization(sign(ehr_key, claims(DISCOVERY_URL))))
    assert response.status_code == 200
    assert_refused(ehr.get("/cds-services", headers=authorization(sign(ehr_key))))
    feedback = {
        "feedback": [
            {"card": "nope", "outcome": "accepted", "outcomeTimestamp": "2026-12-02T10:00:00Z"}
        ]
    }
    token = sign(ehr_key, claims(FEEDBACK_URL))
    assert (
        ehr.post(f"{SERVICE}/feedback", json=feedback, headers=authorization(token)).status_code
        == 200
    )
    token = sign(ehr_key, claims(DISCOVERY_URL))
    assert_refused(ehr.post(f"{SERVICE}/feedback", json=feedback, headers=authorization(token)))


def _forged(ehr_key: SigningKey) -> str:
    """Signed by another key that claims the EHR's kid."""
    return sign(rsa_key(kid=ehr_key.kid, alg=ehr_key.alg))


def _tampered(ehr_key: SigningKey) -> str:
    """A real token whose claims were changed after signing."""
    header, _, signature = sign(ehr_key).split(".")
    other = sign(ehr_key, claims(sub="someone-else")).split(".")[1]
    return f"{header}.{other}.{signature}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hs256(ehr_key: SigningKey) -> str:
    """HMAC-signed with the public key (PEM) as the secret: the classic key confusion.

    Made by hand, as an attacker would: PyJWT refuses to sign with such a secret.
    """
    public = ehr_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": ehr_key.kid}).encode())
    payload = _b64(json.dumps(claims()).encode())
    mac = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


def _none(ehr_key: SigningKey) -> str:
    """Unsigned (alg none), made by hand."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": ehr_key.kid}).encode())
    return f"{header}.{_b64(json.dumps(claims()).encode())}."


REFUSED = {
    "forged signature": _forged,
    "claims changed after signing": _tampered,
    "wrong kid": lambda key: sign(key, kid="not-a-kid-of-the-set"),
    "no kid": lambda key: jwt.encode(claims(), key.private, algorithm=key.alg),
    "HS256": _hs256,
    "alg none": _none,
    "RSA key named for ES384": lambda key: sign(SigningKey(key.kid, "PS384", key.private)),
    "expired past the skew": lambda key: sign(
        key, claims(exp=int(time.time()) - 61, iat=int(time.time()) - 400)
    ),
    "issued in the future past the skew": lambda key: sign(
        key, claims(iat=int(time.time()) + 120, exp=int(time.time()) + 400)
    ),
    "wrong aud": lambda key: sign(key, claims(aud="https://other.example/cds-services/x")),
    "aud of another route": lambda key: sign(key, claims(aud=DISCOVERY_URL)),
    "unknown iss": lambda key: sign(key, claims(iss="https://other-ehr.example")),
    "no jti": lambda key: sign(key, claims(jti=None)),
    "no exp": lambda key: sign(key, claims(exp=None)),
    "jku elsewhere": lambda key: sign(key, jku="https://attacker.example/jwks.json"),
    "not a JWT at all": lambda key: "a.b.c",
}


@pytest.mark.parametrize("make", list(REFUSED.values()), ids=list(REFUSED))
def test_every_forged_expired_or_misaddressed_token_gets_a_bare_401(
    ehr: FlaskClient,
    ehr_key: SigningKey,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
    make: Any,
) -> None:
    response = ehr.post(
        SERVICE, json=hook_body(rulebook, valid_answers), headers=authorization(make(ehr_key))
    )
    assert_refused(response)


def test_the_algorithms_the_spec_names_are_accepted(
    database_url: str, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    # ehr-v1.md: ES384, RS384, ES256, RS256 at least (the fixtures cover the 384s).
    keys = [rsa_key("rs256", "RS256"), rsa_key("ps256", "PS256"), ec_key("es256", "ES256")]
    config = client_config(jwks=jwk_set(*keys))
    body = hook_body(rulebook, valid_answers)
    with make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as app:
        for key in keys:
            response = app.test_client().post(SERVICE, json=body, headers=authorization(sign(key)))
            assert response.status_code == 200, key.alg


def test_clock_skew_of_up_to_60_seconds_is_allowed(
    ehr: FlaskClient, ehr_key: SigningKey, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    now = int(time.time())
    body = hook_body(rulebook, valid_answers)
    for token in (
        sign(ehr_key, claims(exp=now - 30, iat=now - 330)),
        sign(ehr_key, claims(iat=now + 30, exp=now + 330)),
    ):
        assert ehr.post(SERVICE, json=body, headers=authorization(token)).status_code == 200


def test_a_token_past_its_exp_but_within_the_skew_is_still_not_replayable(
    ehr: FlaskClient, ehr_app: Flask, ehr_key: SigningKey, rulebook: Rulebook, valid_answers: Any
) -> None:
    # Kept until exp + 60 s, not exp: pruning at exp would let it be replayed for a minute.
    now = int(time.time())
    token = sign(ehr_key, claims(exp=now - 30, iat=now - 330))
    body = hook_body(rulebook, valid_answers)
    assert ehr.post(SERVICE, json=body, headers=authorization(token)).status_code == 200
    # Another call prunes the expired ids first; this one is kept.
    assert ehr.post(SERVICE, json=body, headers=authorization(sign(ehr_key))).status_code == 200
    assert_refused(ehr.post(SERVICE, json=body, headers=authorization(token)))
    with app_store(ehr_app).engine.connect() as conn:
        (until,) = conn.execute(
            sa.select(cds_token_ids.c.expires_at).where(
                cds_token_ids.c.jti == jwt.decode(token, options={"verify_signature": False})["jti"]
            )
        ).scalars()
    if until.tzinfo is None:  # SQLite hands back naive UTC
        until = until.replace(tzinfo=UTC)
    assert until == datetime.fromtimestamp(now - 30 + 60, UTC)


@BOTH_DATABASES
def test_a_replayed_jti_gets_401_on_another_instance_too(
    database_url: str,
    ehr_key: SigningKey,
    ehr_ec_key: SigningKey,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
) -> None:
    config = client_config(jwks=jwk_set(ehr_key, ehr_ec_key))
    body = hook_body(rulebook, valid_answers)
    with (
        make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as first,
        make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as second,
    ):
        token = sign(ehr_key)
        assert (
            first.test_client().post(SERVICE, json=body, headers=authorization(token)).status_code
            == 200
        )
        assert_refused(first.test_client().post(SERVICE, json=body, headers=authorization(token)))
        assert_refused(second.test_client().post(SERVICE, json=body, headers=authorization(token)))
        # A new jti from the same EHR is a new call.
        fresh = sign(ehr_key)
        assert (
            second.test_client().post(SERVICE, json=body, headers=authorization(fresh)).status_code
            == 200
        )


def test_seen_jtis_are_pruned_once_their_tokens_expire(ehr_app: Flask) -> None:
    store = app_store(ehr_app)
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert store.cds.remember_token_id(ISS, "old", past)
    assert store.cds.remember_token_id(ISS, "new", past + timedelta(hours=1))
    assert not store.cds.remember_token_id(ISS, "new", past + timedelta(hours=1))
    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(cds_token_ids.c.jti)).scalars().all()
    assert kept == ["new"]


def test_clinician_keys_keep_working_and_portal_keys_do_not(
    ehr: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    body = hook_body(rulebook, valid_answers)
    assert ehr.post(SERVICE, json=body, headers=bearer("dr-c")).status_code == 200
    assert ehr.post(SERVICE, json=body, headers=bearer("portal-a")).status_code == 403
    assert ehr.post(SERVICE, json=body).status_code == 401


def test_a_jwks_url_is_fetched_once_cached_and_fetched_again_for_a_new_kid(
    database_url: str, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    first, rotated = rsa_key("k1", "RS256"), ec_key("k2", "ES256")
    body = hook_body(rulebook, valid_answers)
    with key_server(jwk_set(first)) as keys:
        config = client_config(jwks_url=keys.url)
        with make_app(database_url, CDS_CLIENTS=config, PUBLIC_URL=PUBLIC_URL) as app:
            client = app.test_client()
            for _ in range(3):
                response = client.post(SERVICE, json=body, headers=authorization(sign(first)))
                assert response.status_code == 200
            assert keys.fetches == 1
            # The EHR rotates its key: the unknown kid makes one fetch of the new set.
            keys.keys = jwk_set(first, rotated)
            verifier = extension.of(app).cds.verifier
            verifier.keys.clock = lambda: time.monotonic() + cds_service.JWKS_REFETCH_SECONDS
            response = client.post(SERVICE, json=body, headers=authorization(sign(rotated)))
            assert response.status_code == 200
            assert keys.fetches == 2
            # Made-up kids right after do not make the service fetch again and again.
            for _ in range(3):
                assert_refused(
                    client.post(SERVICE, json=body, headers=authorization(sign(first, kid="x")))
                )
            assert keys.fetches == 2
            # A jku equal to the configured jwks_url is honoured.
            token = sign(first, jku=keys.url)
            assert client.post(SERVICE, json=body, headers=authorization(token)).status_code == 200


def test_an_ehr_whose_key_set_is_slow_holds_up_no_other_ehr() -> None:
    slow_key, quick_key = rsa_key("slow", "RS256"), rsa_key("quick", "RS256")
    sets = {
        "https://slow.example/jwks": jwk_set(slow_key),
        "https://quick.example/jwks": jwk_set(quick_key),
    }
    answer_slow = threading.Event()
    fetched: list[str] = []

    def fetch(url: str) -> Any:
        fetched.append(url)
        if "slow" in url:
            assert answer_slow.wait(10)
        return sets[url]

    keys = cds_service.KeySets(fetch=fetch)
    slow = cds_service.CdsClient("https://slow.example", "https://slow.example/jwks", None)
    quick = cds_service.CdsClient("https://quick.example", "https://quick.example/jwks", None)
    found: dict[int, Any] = {}
    waiting = [
        threading.Thread(target=lambda n=n: found.setdefault(n, keys.key(slow, "slow")))
        for n in range(3)
    ]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 5
    while "https://slow.example/jwks" not in fetched:
        assert time.monotonic() < deadline, "the slow EHR's fetch never started"
        time.sleep(0.01)
    # The slow EHR's fetch is under way: the other EHR is served meanwhile.
    started = time.monotonic()
    assert keys.key(quick, "quick")["kid"] == "quick"
    assert time.monotonic() - started < 2
    assert all(thread.is_alive() for thread in waiting)
    answer_slow.set()
    for thread in waiting:
        thread.join(10)
        assert not thread.is_alive()
    # The slow EHR's calls shared its one fetch.
    assert [found[n]["kid"] for n in range(3)] == ["slow"] * 3
    assert fetched.count("https://slow.example/jwks") == 1


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("not json", "SCREENING_CDS_CLIENTS: must be a JSON array"),
        ('{"iss": "x"}', "SCREENING_CDS_CLIENTS: must be a JSON array"),
        ('[{"jwks_url": "https://e.example/k"}]', "entry 1: iss must be"),
        ('[{"iss": "x"}]', "give exactly one of jwks_url and jwks"),
        ('[{"iss": "x", "jwks_url": "ftp://e.example/k"}]', "jwks_url must be an http"),
        (
            '[{"iss": "x", "jwks": {"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}}]',
            "must be an RSA or EC public key",
        ),
        (
            '[{"iss": "x", "jwks": {"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}}]',
            "needs a kid",
        ),
        (
            '[{"iss": "x", "jwks_url": "https://e.example/k", "fhir_servers": ["nope"]}]',
            "fhir_servers must be a list",
        ),
        ('[{"iss": "x", "jwks_url": "https://e.example/k", "tenant": 1}]', "unknown field"),
        (
            '[{"iss": "x", "jwks_url": "https://e.example/k"},'
            ' {"iss": "x", "jwks_url": "https://e.example/k"}]',
            "listed twice",
        ),
    ],
)
def test_a_bad_client_list_stops_start_up_naming_the_setting(
    database_url: str, value: str, words: str
) -> None:
    with pytest.raises(StartupError) as caught:
        create_app(
            {
                "TESTING": True,
                "DATABASE_URL": database_url,
                "API_KEYS": API_KEYS,
                "CDS_CLIENTS": value,
                "PUBLIC_URL": PUBLIC_URL,
            }
        )
    assert "SCREENING_CDS_CLIENTS" in str(caught.value)
    assert words in str(caught.value)


def test_clients_need_the_public_url(database_url: str, ehr_key: SigningKey) -> None:
    with pytest.raises(StartupError, match="SCREENING_PUBLIC_URL: needed with SCREENING_CDS"):
        create_app(
            {
                "TESTING": True,
                "DATABASE_URL": database_url,
                "API_KEYS": API_KEYS,
                "CDS_CLIENTS": client_config(jwks=jwk_set(ehr_key)),
            }
        )
