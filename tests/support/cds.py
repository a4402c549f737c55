"""An EHR for the CDS Hooks tests: its signing keys, its signed JWTs, a JWK Set server and
a real FHIR server (Medplum's FHIR engine under Node, ``fhir_server.mjs``)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from screening import PROJECT_ROOT
from tests.support.node import node_script
from tests.support.serving import serving

ISS = "https://ehr.example.org"
#: Where the test app says it is reached (SCREENING_PUBLIC_URL): Flask's test client host.
PUBLIC_URL = "http://localhost"
SERVICE_URL = f"{PUBLIC_URL}/cds-services/lumbar-rfa-screening"
FEEDBACK_URL = f"{SERVICE_URL}/feedback"
DISCOVERY_URL = f"{PUBLIC_URL}/cds-services"


@dataclass
class SigningKey:
    """An EHR's private key, its kid and algorithm."""

    kid: str
    alg: str
    private: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK with ``kid`` (and ``use``/``alg``), as an EHR publishes."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}


def rsa_key(kid: str = "rsa-1", alg: str = "RS384") -> SigningKey:
    """A new 2048-bit RSA key."""
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str = "ec-1", alg: str = "ES384") -> SigningKey:
    """A new EC key on the curve ``alg`` names."""
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return SigningKey(kid, alg, ec.generate_private_key(curve))


def jwk_set(*keys: SigningKey) -> dict[str, Any]:
    """The public JWK Set of ``keys``."""
    return {"keys": [key.public_jwk for key in keys]}


def claims(aud: str = SERVICE_URL, **changes: Any) -> dict[str, Any]:
    """A CDS Hooks 2.0 token's claims, valid for five minutes from now."""
    now = int(time.time())
    body = {
        "iss": ISS,
        "sub": "ehr-client-id",
        "aud": aud,
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_hex(16),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def sign(key: SigningKey, payload: dict[str, Any] | None = None, **headers: Any) -> str:
    """``payload`` (default: ``claims()``) signed by ``key``, with its kid."""
    return jwt.encode(
        payload or claims(),
        key.private,
        algorithm=key.alg,
        headers={"kid": key.kid, "typ": "JWT", **headers},
    )


def authorization(token: str) -> dict[str, str]:
    """The Authorization header of a JWT."""
    return {"Authorization": f"Bearer {token}"}


def client_config(**entry: Any) -> str:
    """``SCREENING_CDS_CLIENTS`` with one client, ``iss`` ISS unless given."""
    return json.dumps([{"iss": ISS, **entry}])


@dataclass
class KeyServer:
    """Serves a JWK Set on ``url`` and counts how often it was fetched."""

    keys: dict[str, Any]
    fetches: int = 0
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Where the set is served."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"


@contextmanager
def key_server(keys: dict[str, Any]) -> Iterator[KeyServer]:
    """A JWK Set server on the loopback interface, for the duration of the block."""
    state = KeyServer(keys)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler calls
            with state._lock:
                state.fetches += 1
                body = json.dumps(state.keys).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(state.server):
        yield state


FHIR_SERVER_SCRIPT = PROJECT_ROOT / "tests" / "support" / "fhir_server.mjs"


@dataclass(frozen=True)
class FhirServer:
    """A running Medplum FHIR server: ``base`` is its FHIR base URL, ``token`` its access token."""

    origin: str
    token: str

    @property
    def base(self) -> str:
        """The FHIR R4 base URL."""
        return f"{self.origin}/fhir/R4"

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Create a resource on the server; return it as stored."""
        response = requests.post(
            f"{self.base}/{resource['resourceType']}",
            json=resource,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/fhir+json",
            },
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def requests(self) -> list[dict[str, Any]]:
        """Every request the FHIR paths got so far, oldest first."""
        return list(requests.get(f"{self.origin}/requests", timeout=10).json())


@contextmanager
def fhir_server(workdir: Path) -> Iterator[FhirServer]:
    """Start ``fhir_server.mjs`` under Node; stop it on exit."""
    token = secrets.token_urlsafe(24)
    with node_script(FHIR_SERVER_SCRIPT, [token], workdir, "fhir_server") as ready:
        yield FhirServer(f"http://127.0.0.1:{ready['port']}", token)
