"""Machine callers with the hospital's OAuth 2.0 access tokens (identity-v1.md, part 3).

An access token is a JWT in the profile of RFC 9068 from an issuer in
``SCREENING_OAUTH_ISSUERS``: ``typ`` ``at+jwt``, an asymmetric signature by a key of the
issuer's JWK Set (found by ``kid``, with one refetch for a ``kid`` not seen before), ``iss``,
``aud`` naming this API, ``exp`` and ``nbf`` with 60 s of clock skew, and a ``scope`` whose
scopes map to a role. PyJWT checks the claims and keeps the key sets; this module chooses
the issuer, maps scopes to roles and names the caller ``oauth:<client_id>`` (else
``oauth:<sub>``).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from screening.services.jwts import ALGORITHMS
from screening.services.jwts import LEEWAY_SECONDS
from screening.services.keys import ROLES
from screening.services.settings import http_url
from screening.services.settings import json_objects

logger = logging.getLogger(__name__)

SETTING = "SCREENING_OAUTH_ISSUERS"
#: How long to wait for an issuer's metadata or key set.
FETCH_TIMEOUT_SECONDS = 5.0
#: How long a fetched key set is used before it is fetched again.
JWKS_LIFESPAN_SECONDS = 300
#: A token naming a ``kid`` the key set lacks fetches the set again at once (a rotated key
#: is found by its first token), and then not again for this long: a caller sending made-up
#: kids can't make the service fetch on every request.
JWKS_REFETCH_SECONDS = 30
#: The ``typ`` headers of an RFC 9068 access token.
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
#: A role's rank: a token whose scopes give several roles has the highest.
_RANK = {role: rank for rank, role in enumerate(ROLES)}
#: A client id that fits the audit log's actor (``oauth:`` + at most 58 characters).
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,58}$")


class TokenRefused(Exception):
    """The access token failed a check (the reason goes to the log, never to the caller)."""


class KeysUnavailable(Exception):
    """The issuer's metadata or key set could not be fetched: no token can be checked."""


@dataclass(frozen=True, slots=True)
class OAuthIssuer:
    """An identity provider whose access tokens the API takes."""

    issuer: str
    #: This API's identifier, which a token's ``aud`` must contain.
    audience: str
    #: Scope -> the role it gives (``portal`` or ``clinician``).
    scopes: Mapping[str, str]
    #: None: the ``jwks_uri`` of the issuer's metadata.
    jwks_url: str | None = None


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A machine caller whose access token was verified: its name in the audit log, the
    role its scopes give (empty for none), and who issued it."""

    name: str
    role: str
    client_id: str
    issuer: str

    @property
    def display_name(self) -> str:
        """A client is named ``oauth:<client_id>``."""
        return self.name

    @property
    def actor_id(self) -> str:
        """``oauth:<client_id>``."""
        return self.name


def parse_oauth_issuers(value: Any) -> tuple[OAuthIssuer, ...]:
    """``SCREENING_OAUTH_ISSUERS``: a JSON array of issuers (empty or unset: none)."""
    issuers: list[OAuthIssuer] = []
    for where, entry in json_objects(
        SETTING,
        value,
        "issuers",
        '{"issuer": ...}',
        "issuer, audience and scopes",
        {"issuer", "jwks_url", "audience", "scopes"},
    ):
        issuer = entry.get("issuer")
        if not isinstance(issuer, str) or not http_url(issuer):
            raise ValueError(f"{where}: issuer must be the provider's http(s) issuer URL")
        jwks_url = entry.get("jwks_url")
        if jwks_url is not None and not http_url(jwks_url, query=True):
            raise ValueError(f"{where}: jwks_url must be an http(s) URL")
        audience = entry.get("audience")
        if not isinstance(audience, str) or not audience:
            raise ValueError(f"{where}: audience must be this API's identifier (a string)")
        scopes = entry.get("scopes")
        if not isinstance(scopes, dict) or not scopes:
            raise ValueError(f'{where}: scopes must map scopes to roles, {{"scope": "portal"}}')
        for scope, role in scopes.items():
            if not isinstance(scope, str):
                raise ValueError(f"{where}: scopes must map scopes to roles")
            if role not in ROLES:
                raise ValueError(f"{where}: scope {scope} must give one of {', '.join(ROLES)}")
        if any(known.issuer == issuer for known in issuers):
            raise ValueError(f"{where}: the issuer {issuer} is listed twice")
        issuers.append(OAuthIssuer(issuer, audience, dict(scopes), jwks_url))
    return tuple(issuers)


class AccessTokens:
    """Verifies access tokens against the configured issuers."""

    def __init__(self, issuers: tuple[OAuthIssuer, ...]) -> None:
        self.issuers = {issuer.issuer: issuer for issuer in issuers}
        self._keys: dict[str, jwt.PyJWKClient] = {}
        self._refetched_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def names_an_issuer(self, token: str) -> bool:
        """Whether a JWT says it is an access token of a configured issuer (unverified: it
        only chooses which check the token goes to, ``verify`` or an EHR's)."""
        if not self.issuers:
            return False
        try:
            header = jwt.get_unverified_header(token)
            named = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return False
        typ = str(header.get("typ", "")).lower()
        return typ in ACCESS_TOKEN_TYPES and isinstance(named, str) and named in self.issuers

    def _key_client(self, issuer: OAuthIssuer) -> jwt.PyJWKClient:
        """The issuer's key set client (its JWK Set URL read from its metadata once)."""
        with self._lock:
            client = self._keys.get(issuer.issuer)
            if client is None:
                url = issuer.jwks_url or _jwks_uri(issuer.issuer)
                client = jwt.PyJWKClient(
                    url,
                    lifespan=JWKS_LIFESPAN_SECONDS,
                    timeout=FETCH_TIMEOUT_SECONDS,
                    # The pause between refetches is this class's (``_signing_key``),
                    # counted from the last refetch for an unknown kid, not from any fetch.
                    cooldown_duration=0,
                )
                self._keys[issuer.issuer] = client
            return client

    def _signing_key(self, issuer: OAuthIssuer, kid: str) -> jwt.PyJWK:
        """The issuer's key ``kid``: from the key set as kept, else from the set fetched
        again, at most once every ``JWKS_REFETCH_SECONDS``."""
        client = self._key_client(issuer)
        for key in client.get_signing_keys():
            if key.key_id == kid:
                return key
        with self._lock:
            now = time.monotonic()
            if now - self._refetched_at.get(issuer.issuer, -math.inf) < JWKS_REFETCH_SECONDS:
                raise jwt.PyJWKClientError("unknown kid; the set was fetched again lately")
            self._refetched_at[issuer.issuer] = now
        return client.get_signing_key(kid)

    def verify(self, token: str) -> OAuthClient:
        """The client an access token was issued to; ``TokenRefused`` when a check fails,
        ``KeysUnavailable`` when the issuer's keys can't be had."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("not a JWT") from None
        if str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise TokenRefused("typ is not at+jwt")
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRefused("not an asymmetric signature")
        named = unverified.get("iss")
        issuer = self.issuers.get(named) if isinstance(named, str) else None
        if issuer is None:
            raise TokenRefused("no configured issuer")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenRefused("no kid")
        try:
            key = self._signing_key(issuer, kid)
        except jwt.PyJWKClientConnectionError:
            raise KeysUnavailable(issuer.issuer) from None
        except jwt.PyJWKClientError:
            raise TokenRefused("unknown kid") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(type(exc).__name__) from None
        # The caller is named by client_id (RFC 9068 requires it), else by sub
        # (identity-v1.md); one given but unusable is refused, never passed over.
        client_id = claims.get("client_id", claims.get("sub"))
        if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
            raise TokenRefused("no usable client_id or sub")
        scope = claims.get("scope")
        granted = scope.split() if isinstance(scope, str) else []
        roles = {issuer.scopes[s] for s in granted if s in issuer.scopes}
        role = max(roles, key=_RANK.__getitem__) if roles else ""
        return OAuthClient(f"oauth:{client_id}", role, client_id, issuer.issuer)


def _jwks_uri(issuer: str) -> str:
    """The ``jwks_uri`` of an issuer's metadata (RFC 8414, else OpenID Connect discovery)."""
    base = issuer.rstrip("/")
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        try:
            response = requests.get(base + path, timeout=FETCH_TIMEOUT_SECONDS)
        except requests.RequestException:
            logger.warning("oauth: the issuer's metadata could not be fetched")
            raise KeysUnavailable(issuer) from None
        if response.status_code != 200:
            continue
        try:
            uri = response.json().get("jwks_uri")
        except (ValueError, AttributeError):
            uri = None
        if isinstance(uri, str) and uri.startswith(("https://", "http://")):
            return uri
    raise KeysUnavailable(issuer)
