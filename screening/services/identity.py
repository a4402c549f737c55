"""Clinicians from the hospital's identity provider: OpenID Connect sign-in and back-channel
logout (identity-v1.md part 1).

Authlib builds the authorization request (PKCE S256) and exchanges the code; PyJWT checks
the ID token and logout tokens against the provider's key set. This module holds what the
contract decides: which checks refuse a sign-in, how roles map to the clinician role, who
the person is, and which sessions a logout token ends. Nothing here knows Flask: the
review pages keep the pending sign-in in the browser's signed session and start the
review session.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session

from screening.services.jwts import ALGORITHMS
from screening.services.jwts import LEEWAY_SECONDS

logger = logging.getLogger(__name__)

#: How long to wait for the provider (metadata, keys, the token exchange).
TIMEOUT_SECONDS = 5.0
#: How long the provider's metadata is used before it is read again.
METADATA_SECONDS = 600
#: A token naming a key the provider's key set lacks reads the metadata again (the provider
#: may have moved its keys), at most this often: made-up ``kid``s can't make every request
#: a fetch.
METADATA_REFETCH_SECONDS = 30
#: An ID token or logout token issued longer ago than this is refused.
MAX_TOKEN_AGE_SECONDS = 300
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: The longest sub, sid or jti kept (the audit log's actor is ``oidc:`` + a sub, in 255).
_MAX_ID = 200
#: The token endpoint authentication methods this client can use, as the contract allows.
_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class ProviderUnavailable(Exception):
    """The identity provider does not answer: sign-in can't proceed (503), nothing else is
    affected."""


class SignInRefused(Exception):
    """A sign-in (or logout token) failed a check. ``reason`` is for the log and audit log,
    never shown; ``status`` is the page's (400, or 403 for a person without the role)."""

    def __init__(
        self, reason: str, status: int = 400, subject: str | None = None, sid: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.subject = subject
        self.sid = sid


def usable_id(value: Any) -> str | None:
    """A ``sub`` or ``sid`` that can be recorded (a non-empty string of at most 200)."""
    return value if isinstance(value, str) and 0 < len(value) <= _MAX_ID else None


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """``SCREENING_OIDC_*``: the provider and this service as its confidential client."""

    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    #: A dotted path into the ID token (or UserInfo) claims: ``realm_access.roles``.
    roles_claim: str
    clinician_roles: frozenset[str]
    #: The provider's name on the sign-in button.
    name: str


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in person: the review pages' principal.

    ``name`` is the audit log's actor and the rate limiter's key (``oidc:<sub>``); the
    display name is what a review's ``by`` and the pages show."""

    name: str
    role: str
    display_name: str
    #: How they signed in: ``oidc`` or ``smart``.
    via: str
    #: The provider's session id, which its back-channel logout names.
    sid: str | None = None

    @property
    def actor_id(self) -> str:
        """``oidc:<sub>`` (or ``smart:<sub>``), as the audit log names them."""
        return self.name


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What the callback needs of the request that started a sign-in, kept in the browser's
    signed session until then: used once."""

    state: str
    nonce: str
    code_verifier: str
    #: A page of the review pages to go to afterwards.
    next_page: str

    def as_dict(self) -> dict[str, str]:
        """For the session cookie."""
        return {
            "state": self.state,
            "nonce": self.nonce,
            "code_verifier": self.code_verifier,
            "next_page": self.next_page,
        }

    @classmethod
    def from_dict(cls, value: object) -> PendingSignIn | None:
        """Back from the session cookie; None for anything else."""
        if not isinstance(value, dict):
            return None
        fields = ("state", "nonce", "code_verifier", "next_page")
        if not all(isinstance(value.get(name), str) for name in fields):
            return None
        return cls(*(value[name] for name in fields))


def _same(given: str, kept: str) -> bool:
    """Whether a value sent back equals the one kept, in constant time (as bytes: any text
    a caller sends is comparable)."""
    return secrets.compare_digest(given.encode("utf-8"), kept.encode("utf-8"))


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The claim a dotted path names (``realm_access.roles``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def display_name(claims: Mapping[str, Any]) -> str:
    """``name``, else ``preferred_username``, else ``email``, else ``sub``."""
    for claim in ("name", "preferred_username", "email", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return value.strip()[:255]
    return "unknown"


class OidcSignIn:
    """The authorization code flow against one provider, for one redirect URI."""

    def __init__(self, config: OidcConfig, redirect_uri: str) -> None:
        self.config = config
        self.redirect_uri = redirect_uri
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._refetched_for_kid_at = -float(METADATA_REFETCH_SECONDS)
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    # --- the provider ---------------------------------------------------------------

    #: Where the provider's metadata is read, below ``config.issuer``.
    METADATA_PATH = "/.well-known/openid-configuration"

    def metadata_usable(self, document: dict[str, Any]) -> bool:
        """Whether a metadata document is this provider's (it names the issuer) and names
        the endpoints a sign-in uses."""
        endpoints = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        return document.get("issuer") == self.config.issuer and all(
            isinstance(document.get(name), str) for name in endpoints
        )

    def metadata(self) -> dict[str, Any]:
        """The provider's metadata (read again after ``METADATA_SECONDS``)."""
        with self._lock:
            now = time.monotonic()
            if self._metadata is None or now - self._metadata_at >= METADATA_SECONDS:
                url = self.config.issuer.rstrip("/") + self.METADATA_PATH
                try:
                    response = requests.get(url, timeout=TIMEOUT_SECONDS)
                    response.raise_for_status()
                    document = response.json()
                except (requests.RequestException, ValueError):
                    logger.warning("oidc: the provider's metadata could not be read")
                    raise ProviderUnavailable(self.config.issuer) from None
                if not isinstance(document, dict) or not self.metadata_usable(document):
                    logger.warning("oidc: the provider's metadata can't be used")
                    raise ProviderUnavailable(self.config.issuer)
                self._metadata, self._metadata_at = document, now
                self._keys = None
            return self._metadata

    def cached_end_session_endpoint(self) -> str | None:
        """The ``end_session_endpoint`` of the metadata read so far (None before any, or
        when it lists none): asks nothing of the provider."""
        endpoint = None if self._metadata is None else self._metadata.get("end_session_endpoint")
        return endpoint if isinstance(endpoint, str) else None

    def _key_set(self) -> jwt.PyJWKClient:
        metadata = self.metadata()
        with self._lock:
            if self._keys is None:
                uri = metadata.get("jwks_uri")
                if not isinstance(uri, str):
                    raise ProviderUnavailable(self.config.issuer)
                self._keys = jwt.PyJWKClient(uri, timeout=TIMEOUT_SECONDS)
            return self._keys

    def _session(self) -> OAuth2Session:
        supported = self.metadata().get("token_endpoint_auth_methods_supported")
        listed = supported if isinstance(supported, list) else ["client_secret_basic"]
        method = next((m for m in listed if m in _AUTH_METHODS), "client_secret_basic")
        if not self.config.client_secret:
            # A public client (a SMART app registered without a secret): PKCE alone.
            method = "none"
        return OAuth2Session(
            self.config.client_id,
            self.config.client_secret,
            token_endpoint_auth_method=method,
            scope=self.config.scopes,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            default_timeout=TIMEOUT_SECONDS,
        )

    # --- signing in -----------------------------------------------------------------

    def expected_issuer(self) -> str:
        """The ``iss`` of the provider's tokens."""
        return self.config.issuer

    def start(self, next_page: str, **extra: str) -> tuple[str, PendingSignIn]:
        """The provider's authorization URL for a new sign-in (with ``extra`` parameters),
        and what to keep until the callback: a fresh state and nonce (256 bits each) and
        the PKCE verifier."""
        pending = PendingSignIn(
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
            next_page,
        )
        url, _ = self._session().create_authorization_url(
            self.metadata()["authorization_endpoint"],
            state=pending.state,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
            **extra,
        )
        return url, pending

    def finish(
        self, params: Mapping[str, str], pending: PendingSignIn | None
    ) -> tuple[Person, str]:
        """The person a callback signs in, and their ID token (for the logout hint).

        Raises ``SignInRefused`` for a missing, unknown or reused state, an error from the
        provider, a wrong ``iss`` (RFC 9207), an ID token that fails a check, or a person
        without a clinician role (403); ``ProviderUnavailable`` when it does not answer."""
        token = self.exchange(params, pending)
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or pending is None:
            raise SignInRefused("no ID token")
        claims = self.check_id_token(id_token, pending.nonce)
        if claim_at(claims, self.config.roles_claim) is None:
            claims = self.with_userinfo(claims, token.get("access_token"))
        return self.person(claims, "oidc"), id_token

    def with_userinfo(self, claims: dict[str, Any], access_token: Any) -> dict[str, Any]:
        """The ID token's claims and, beneath them, the UserInfo endpoint's (where a
        provider puts the roles claim, or the name, there alone): only when UserInfo names
        the same ``sub`` (OpenID Connect Core 5.3.2). Without an endpoint, an access token
        or a usable answer, the ID token's claims alone."""
        endpoint = self.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str) or not isinstance(access_token, str):
            return claims
        try:
            response = requests.get(
                endpoint,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=TIMEOUT_SECONDS,
                allow_redirects=False,
            )
            response.raise_for_status()
            info = response.json()
        except requests.RequestException:
            logger.warning("oidc: the UserInfo endpoint did not answer")
            raise ProviderUnavailable(self.config.issuer) from None
        except ValueError:
            logger.info("oidc: UserInfo is not JSON; the ID token's claims alone are used")
            return claims
        if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
            raise SignInRefused("UserInfo names another sub")
        return {**info, **claims}

    def exchange(self, params: Mapping[str, str], pending: PendingSignIn | None) -> dict[str, Any]:
        """The token response for a callback, once its state, ``iss`` and code are checked."""
        state = params.get("state")
        if pending is None or not state or not _same(state, pending.state):
            raise SignInRefused("state missing, unknown or used before")
        metadata = self.metadata()
        issuer = params.get("iss")
        if issuer is not None and issuer != self.expected_issuer():
            raise SignInRefused("iss is not the issuer")
        if issuer is None and metadata.get("authorization_response_iss_parameter_supported"):
            raise SignInRefused("iss missing")
        if "error" in params:
            raise SignInRefused("the provider answered with an error")
        code = params.get("code")
        if not code:
            raise SignInRefused("no code")
        try:
            token = self._session().fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=pending.code_verifier,
            )
        except requests.RequestException:
            logger.warning("oidc: the token endpoint did not answer")
            raise ProviderUnavailable(self.config.issuer) from None
        except AuthlibBaseError:
            raise SignInRefused("the code was refused") from None
        return dict(token)

    def _signing_key(self, token: str) -> jwt.PyJWK:
        """The provider's key a token names. A ``kid`` its key set lacks (PyJWT has fetched
        the set again) reads the metadata again, at most every ``METADATA_REFETCH_SECONDS``,
        and looks once more: the provider may have moved its keys to another ``jwks_uri``."""
        try:
            return self._key_set().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise
        except jwt.PyJWKClientError:
            with self._lock:
                now = time.monotonic()
                if now - self._refetched_for_kid_at < METADATA_REFETCH_SECONDS:
                    raise
                self._refetched_for_kid_at = now
                self._metadata = None
            return self._key_set().get_signing_key_from_jwt(token)

    def _verified(self, token: str, **checks: Any) -> dict[str, Any]:
        """A JWT's claims once its signature (by the provider's keys) and ``checks`` hold."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALGORITHMS:
                raise SignInRefused("not an asymmetric signature")
            key = self._signing_key(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                issuer=self.expected_issuer(),
                audience=self.config.client_id,
                leeway=LEEWAY_SECONDS,
                **checks,
            )
        except jwt.PyJWKClientConnectionError:
            raise ProviderUnavailable(self.config.issuer) from None
        except jwt.PyJWTError as exc:
            raise SignInRefused(f"token: {type(exc).__name__}") from None
        issued = claims.get("iat")
        if not isinstance(issued, int | float) or abs(time.time() - issued) > MAX_TOKEN_AGE_SECONDS:
            raise SignInRefused("token: iat not within 5 minutes")
        return claims

    def check_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """An ID token's claims once every check holds (OpenID Connect Core 3.1.3.7)."""
        claims = self._verified(id_token, options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        found = claims.get("nonce")
        if not isinstance(found, str) or not _same(found, nonce):
            raise SignInRefused("nonce does not match")
        azp = claims.get("azp")
        if azp is not None and azp != self.config.client_id:
            raise SignInRefused("azp is another client")
        return claims

    def is_clinician(self, claims: Mapping[str, Any]) -> bool:
        """Whether the roles claim holds one of the clinician roles."""
        roles = claim_at(claims, self.config.roles_claim)
        listed = roles if isinstance(roles, list) else [roles]
        held = {role for role in listed if isinstance(role, str)}
        return bool(held & self.config.clinician_roles)

    def person(self, claims: Mapping[str, Any], via: str) -> Person:
        """The person the claims name, if ``is_clinician`` (else 403)."""
        subject = usable_id(claims.get("sub"))
        if subject is None:
            raise SignInRefused("no usable sub")
        sid = usable_id(claims.get("sid"))
        if not self.is_clinician(claims):
            raise SignInRefused("not a clinician", status=403, subject=f"{via}:{subject}", sid=sid)
        return Person(f"{via}:{subject}", "clinician", display_name(claims), via, sid)

    # --- signing out ----------------------------------------------------------------

    def end_session_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser to sign out at the provider too; None when it lists no
        ``end_session_endpoint`` (or can't be reached)."""
        try:
            endpoint = self.metadata().get("end_session_endpoint")
        except ProviderUnavailable:
            return None
        if not isinstance(endpoint, str):
            return None
        params = {
            "client_id": self.config.client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
        }
        if id_token:
            params["id_token_hint"] = id_token
        return str(requests.Request("GET", endpoint, params=params).prepare().url)

    def check_logout_token(self, token: str) -> tuple[str | None, str | None, str, int]:
        """A back-channel logout token's ``sid``, ``sub``, ``jti`` and ``exp`` once every
        check of OIDC Back-Channel Logout 1.0 holds (the caller makes sure the jti is new)."""
        try:
            typ = jwt.get_unverified_header(token).get("typ")
        except jwt.PyJWTError:
            raise SignInRefused("logout token: not a JWT") from None
        if typ is not None and str(typ).lower() not in ("logout+jwt", "application/logout+jwt"):
            raise SignInRefused("logout token: typ")
        claims = self._verified(token, options={"require": ["iss", "aud", "iat", "jti"]})
        events = claims.get("events")
        if not isinstance(events, dict) or BACKCHANNEL_EVENT not in events:
            raise SignInRefused("logout token: no back-channel logout event")
        if "nonce" in claims:
            raise SignInRefused("logout token: has a nonce")
        sid, sub, jti = claims.get("sid"), claims.get("sub"), claims.get("jti")
        sid = sid if isinstance(sid, str) and sid else None
        sub = sub if isinstance(sub, str) and sub else None
        if sid is None and sub is None:
            raise SignInRefused("logout token: neither sid nor sub")
        if not isinstance(jti, str) or not jti or len(jti) > _MAX_ID:
            raise SignInRefused("logout token: no usable jti")
        if (sid is not None and len(sid) > _MAX_ID) or (sub is not None and len(sub) > _MAX_ID):
            raise SignInRefused("logout token: sid or sub too long")
        # Kept past any moment the token could still be taken (its exp, or iat's 5 minutes,
        # plus the clock skew), and never further than a day ahead.
        now = time.time()
        issued, expires = claims.get("iat"), claims.get("exp")
        last = max(
            float(expires) if isinstance(expires, int | float) else now,
            float(issued) + MAX_TOKEN_AGE_SECONDS if isinstance(issued, int | float) else now,
        )
        ends = int(min(last, now + 86400)) + LEEWAY_SECONDS
        return sid, sub, jti, ends
