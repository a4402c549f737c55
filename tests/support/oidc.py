"""A real OpenID provider for the tests: ``oidc_provider.mjs`` (panva's oidc-provider 9.x,
installed by ``npm ci``) started under Node on loopback with the accounts, clients and API
given here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from screening import PROJECT_ROOT
from tests.support.node import node_script

PROVIDER_SCRIPT = PROJECT_ROOT / "tests" / "support" / "oidc_provider.mjs"
#: The API identifier access tokens are issued for (their ``aud``).
API_AUDIENCE = "https://screening.test/api"
PORTAL_SCOPE = "screening.portal"
CLINICIAN_SCOPE = "screening.clinician"
#: A scope the API maps to no role.
OTHER_SCOPE = "reports.read"


def machine_client(client_id: str, secret: str, scope: str) -> dict[str, Any]:
    """A client that gets access tokens for the API with the client credentials grant."""
    return {
        "client_id": client_id,
        "client_secret": secret,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": scope,
    }


#: The API as a resource server: JWT access tokens (RFC 9068) signed ES256.
API_SERVER = {
    "identifier": API_AUDIENCE,
    "scope": f"{PORTAL_SCOPE} {CLINICIAN_SCOPE} {OTHER_SCOPE}",
    "alg": "ES256",
    "accessTokenTTL": 600,
    "default": True,
}


@dataclass(frozen=True)
class OpenIdProvider:
    """A running provider: its issuer URL (also its address)."""

    issuer: str

    def metadata(self) -> dict[str, Any]:
        """Its OpenID Connect discovery document."""
        response = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def client_credentials(self, client_id: str, secret: str, scope: str | None = None) -> str:
        """An access token for ``client_id`` (all its scopes, or ``scope``)."""
        data = {"grant_type": "client_credentials", "resource": API_AUDIENCE}
        if scope is not None:
            data["scope"] = scope
        response = requests.post(
            self.metadata()["token_endpoint"], data=data, auth=(client_id, secret), timeout=10
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@contextmanager
def openid_provider(
    workdir: Path, config: dict[str, Any], port: int = 0
) -> Iterator[OpenIdProvider]:
    """Start the provider with ``config`` (accounts, clients, resourceServers, smart; an
    ``issuer`` of its own if given) on ``port`` (0: a free one); stop it on exit."""
    # The provider must list a client's scopes among those it supports: the APIs' scopes.
    api_scopes = {
        scope for server in config.get("resourceServers", []) for scope in server["scope"].split()
    }
    config = {**config, "scopes": sorted(api_scopes | set(config.get("scopes", [])))}
    config_path = workdir / "oidc_provider.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    args = ["--config", str(config_path), "--port", str(port)]
    with node_script(PROVIDER_SCRIPT, args, workdir, "oidc_provider") as ready:
        yield OpenIdProvider(ready["issuer"])
