"""Every ``SCREENING_*`` setting, read and checked in one place, once, at start-up.

``read_settings`` takes the settings as Flask's ``from_prefixed_env`` leaves them (names
without the prefix; JSON values already parsed) or as a test passes them, and gives one
typed, frozen ``Settings``: the modules that use a setting are handed its value and never
parse it again. A setting that can't be used raises ``SettingsError`` whose message names
it (``SCREENING_API_KEYS: ...``) and never repeats a secret. docs/operators.md "Configuration"
table lists exactly the settings here (a test keeps the two in step).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from limits import parse_many
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

from screening.rules.loader import RulesError
from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import load_rules
from screening.services.cds import CdsClient
from screening.services.cds import parse_cds_clients
from screening.services.identity import OidcConfig
from screening.services.keys import ApiKey
from screening.services.keys import parse_api_keys
from screening.services.oauth import OAuthIssuer
from screening.services.oauth import parse_oauth_issuers
from screening.services.settings import http_url
from screening.services.smart import SmartClient
from screening.services.smart import parse_smart_clients
from screening.services.triage import parse_review_minutes
from screening.services.webhooks import Endpoint
from screening.services.webhooks import parse_endpoints
from screening.services.webhooks import parse_public_url

PREFIX = "SCREENING_"
#: The shortest secret key the review pages accept.
MIN_SECRET_LENGTH = 32
#: Signed in clinicians are signed out after this long without a request...
DEFAULT_IDLE = timedelta(minutes=30)
#: ... and this long after signing in, however busy they keep the session.
DEFAULT_LIFETIME = timedelta(hours=8)
DEFAULT_RATE_LIMIT = "50/second"
DEFAULT_OIDC_SCOPES = "openid profile email"
DEFAULT_OIDC_ROLES_CLAIM = "roles"
DEFAULT_OIDC_NAME = "your organization"
_CLAIM_PATH = re.compile(r"^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$")
MAX_TRUSTED_PROXIES = 10
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class SettingsError(ValueError):
    """A setting can't be used; the message names it."""


def _setting(name: str) -> Any:
    """A field read from ``SCREENING_<name>``."""
    return field(metadata={"setting": name})


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The service's configuration, checked and typed."""

    #: Every rule package under the folder, loaded and checked.
    rulebook: Rulebook = _setting("RULES_DIR")
    #: None: an SQLite file in the app's instance folder.
    database_url: str | None = _setting("DATABASE_URL")
    api_keys: tuple[ApiKey, ...] = _setting("API_KEYS")
    #: None: the review pages answer 503 saying so.
    secret_key: str | None = _setting("SECRET_KEY")
    review_insecure_cookies: bool = _setting("REVIEW_INSECURE_COOKIES")
    session_idle: timedelta = _setting("PERMANENT_SESSION_LIFETIME")
    session_lifetime: timedelta = _setting("REVIEW_SESSION_LIFETIME")
    #: Empty: no rate limit.
    rate_limit: str = _setting("RATE_LIMIT")
    rate_limit_storage: str = _setting("RATE_LIMIT_STORAGE")
    trusted_proxies: int = _setting("TRUSTED_PROXIES")
    #: The SHA-256 of the metrics token; None: ``/metrics`` answers 404.
    metrics_key: str | None = _setting("METRICS_KEY")
    webhooks: tuple[Endpoint, ...] = _setting("WEBHOOKS")
    public_url: str | None = _setting("PUBLIC_URL")
    cds_clients: tuple[CdsClient, ...] = _setting("CDS_CLIENTS")
    oauth_issuers: tuple[OAuthIssuer, ...] = _setting("OAUTH_ISSUERS")
    #: None: OpenID Connect sign-in is off.
    oidc_issuer: str | None = _setting("OIDC_ISSUER")
    oidc_client_id: str | None = _setting("OIDC_CLIENT_ID")
    oidc_client_secret: str | None = _setting("OIDC_CLIENT_SECRET")
    oidc_scopes: str = _setting("OIDC_SCOPES")
    oidc_roles_claim: str = _setting("OIDC_ROLES_CLAIM")
    oidc_clinician_roles: frozenset[str] = _setting("OIDC_CLINICIAN_ROLES")
    oidc_name: str = _setting("OIDC_NAME")
    #: Whether the token sign-in form is offered (beside OIDC, or alone).
    review_token_sign_in: bool = _setting("REVIEW_TOKEN_SIGN_IN")
    smart_clients: tuple[SmartClient, ...] = _setting("SMART_CLIENTS")

    @property
    def oidc(self) -> OidcConfig | None:
        """OpenID Connect sign-in's settings, when it is on."""
        if self.oidc_issuer is None:
            return None
        assert self.oidc_client_id is not None and self.oidc_client_secret is not None
        return OidcConfig(
            issuer=self.oidc_issuer,
            client_id=self.oidc_client_id,
            client_secret=self.oidc_client_secret,
            scopes=self.oidc_scopes,
            roles_claim=self.oidc_roles_claim,
            clinician_roles=self.oidc_clinician_roles,
            name=self.oidc_name,
        )

    urgent_review_minutes: int = _setting("URGENT_REVIEW_MINUTES")

    def __repr__(self) -> str:
        # Never the secret key, in a log or a traceback.
        return f"Settings(database_url={'set' if self.database_url else 'default'}, ...)"


def setting_names() -> list[str]:
    """Every setting's environment variable, in the order of ``Settings``."""
    return [PREFIX + f.metadata["setting"] for f in fields(Settings)]


def read_settings(config: Mapping[str, Any], default_rules: Path) -> Settings:
    """Read and check every setting in ``config``; the rules from ``default_rules`` unless
    ``RULES_DIR`` names a folder. Raises ``SettingsError`` for the first unusable one."""
    rules_dir = config.get("RULES_DIR") or default_rules
    try:
        rulebook = load_rules(rules_dir)
    except RulesError as exc:
        raise SettingsError(
            f"SCREENING_RULES_DIR: the rules in {rules_dir} can't be used:\n{exc}"
        ) from None
    try:
        keys = parse_api_keys(config.get("API_KEYS") or "")
        # An endpoint may ask for any package's outcome: each package's screenings are sent.
        endpoints = parse_endpoints(config.get("WEBHOOKS"), list(rulebook.outcomes))
        public_url = parse_public_url(config.get("PUBLIC_URL"), endpoints)
        trusted = parse_cds_clients(config.get("CDS_CLIENTS"))
        review_minutes = parse_review_minutes(config.get("URGENT_REVIEW_MINUTES"))
        oauth_issuers = parse_oauth_issuers(config.get("OAUTH_ISSUERS"))
        smart_clients = parse_smart_clients(config.get("SMART_CLIENTS"))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if trusted and public_url is None:
        # A token's aud must be checked against our own address, not the Host header a
        # caller sends.
        raise SettingsError(
            "SCREENING_PUBLIC_URL: needed with SCREENING_CDS_CLIENTS: the address EHRs "
            "call the service at (such as https://screening.example.org), which their "
            "tokens' aud must name"
        )
    oidc = _oidc(config, public_url)
    if smart_clients and public_url is None:
        raise SettingsError(
            "SCREENING_PUBLIC_URL: needed with SCREENING_SMART_CLIENTS: the redirect URI "
            "registered at each EHR is built from it"
        )
    secret_key = _secret_key(config.get("SECRET_KEY"))
    if secret_key is None and (oidc["oidc_issuer"] is not None or smart_clients):
        # Sign-in keeps its state, nonce and PKCE verifier in the signed cookie.
        raise SettingsError(
            "SCREENING_SECRET_KEY: needed with SCREENING_OIDC_ISSUER or "
            "SCREENING_SMART_CLIENTS: sign-in keeps its state in a cookie signed with it"
        )
    return Settings(
        rulebook=rulebook,
        database_url=_database_url(config.get("DATABASE_URL")),
        api_keys=keys,
        secret_key=secret_key,
        review_insecure_cookies=bool(config.get("REVIEW_INSECURE_COOKIES")),
        session_idle=_seconds(config, "PERMANENT_SESSION_LIFETIME", DEFAULT_IDLE),
        session_lifetime=_seconds(config, "REVIEW_SESSION_LIFETIME", DEFAULT_LIFETIME),
        rate_limit=_rate_limit(config.get("RATE_LIMIT", DEFAULT_RATE_LIMIT)),
        rate_limit_storage=_rate_limit_storage(config.get("RATE_LIMIT_STORAGE")),
        trusted_proxies=_trusted_proxies(config.get("TRUSTED_PROXIES", 0)),
        metrics_key=_metrics_key(config.get("METRICS_KEY")),
        webhooks=endpoints,
        public_url=public_url,
        cds_clients=trusted,
        oauth_issuers=oauth_issuers,
        urgent_review_minutes=review_minutes,
        smart_clients=smart_clients,
        **oidc,
    )


def _oidc(config: Mapping[str, Any], public_url: str | None) -> dict[str, Any]:
    """The ``SCREENING_OIDC_*`` settings and ``SCREENING_REVIEW_TOKEN_SIGN_IN``, checked."""
    issuer = config.get("OIDC_ISSUER") or None
    names = ("CLIENT_ID", "CLIENT_SECRET", "SCOPES", "ROLES_CLAIM", "CLINICIAN_ROLES", "NAME")
    if issuer is None:
        for name in names:
            if config.get(f"OIDC_{name}"):
                raise SettingsError(f"SCREENING_OIDC_{name}: set only with SCREENING_OIDC_ISSUER")
    elif not isinstance(issuer, str) or not http_url(issuer):
        raise SettingsError("SCREENING_OIDC_ISSUER: the provider's http(s) issuer URL")
    elif public_url is None:
        raise SettingsError(
            "SCREENING_PUBLIC_URL: needed with SCREENING_OIDC_ISSUER: the redirect and "
            "logout URIs registered at the provider are built from it"
        )
    values: dict[str, Any] = {"oidc_issuer": issuer}
    for name in ("CLIENT_ID", "CLIENT_SECRET"):
        value = config.get(f"OIDC_{name}") or None
        if issuer is not None and (not isinstance(value, str) or not value.strip()):
            raise SettingsError(f"SCREENING_OIDC_{name}: required with SCREENING_OIDC_ISSUER")
        values[f"oidc_{name.lower()}"] = value
    scopes = str(config.get("OIDC_SCOPES") or DEFAULT_OIDC_SCOPES).split()
    if "openid" not in scopes:
        raise SettingsError("SCREENING_OIDC_SCOPES: must include openid")
    claim = str(config.get("OIDC_ROLES_CLAIM") or DEFAULT_OIDC_ROLES_CLAIM)
    if not _CLAIM_PATH.fullmatch(claim):
        raise SettingsError("SCREENING_OIDC_ROLES_CLAIM: a claim name or a dotted path to one")
    roles = frozenset(
        role.strip() for role in str(config.get("OIDC_CLINICIAN_ROLES") or "").split(",")
    ) - {""}
    if issuer is not None and not roles:
        raise SettingsError(
            "SCREENING_OIDC_CLINICIAN_ROLES: required with SCREENING_OIDC_ISSUER: the values "
            "of the roles claim that make a person a clinician (nobody is one by default)"
        )
    name = str(config.get("OIDC_NAME") or DEFAULT_OIDC_NAME).strip()
    if not name or len(name) > 64:
        raise SettingsError("SCREENING_OIDC_NAME: 1 to 64 characters")
    token_sign_in = config.get("REVIEW_TOKEN_SIGN_IN")
    if token_sign_in is None or token_sign_in == "":
        offered = issuer is None
    elif str(token_sign_in).strip().lower() in ("1", "true"):
        offered = True
    elif str(token_sign_in).strip().lower() in ("0", "false"):
        offered = False
    else:
        raise SettingsError("SCREENING_REVIEW_TOKEN_SIGN_IN: 1 (offered) or 0 (not offered)")
    values.update(
        oidc_scopes=" ".join(scopes),
        oidc_roles_claim=claim,
        oidc_clinician_roles=roles,
        oidc_name=name,
        review_token_sign_in=offered,
    )
    return values


def _database_url(value: Any) -> str | None:
    if not value:
        return None
    try:
        sa.make_url(str(value))
    except sa.exc.ArgumentError:
        # Not the value: it may hold a password.
        raise SettingsError(
            "SCREENING_DATABASE_URL: not a database URL such as "
            "postgresql+psycopg://user@host/db or sqlite:///path/to/file.db"
        ) from None
    return str(value)


def _secret_key(value: Any) -> str | None:
    if not value:
        return None
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        raise SettingsError(
            f"SCREENING_SECRET_KEY: use at least {MIN_SECRET_LENGTH} random characters, "
            "for example the output of: python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return value


def _seconds(config: Mapping[str, Any], name: str, default: timedelta) -> timedelta:
    """A positive duration given as whole seconds (or, by a test, as a timedelta)."""
    value = config.get(name, default)
    if isinstance(value, timedelta) and value > timedelta(0):
        return value
    if type(value) is int and value > 0:
        return timedelta(seconds=value)
    raise SettingsError(f"SCREENING_{name}: must be a whole number of seconds above 0")


def _rate_limit(value: Any) -> str:
    limit = str(value or "").strip()
    if limit:
        try:
            parse_many(limit)
        except ValueError:
            raise SettingsError(
                f"SCREENING_RATE_LIMIT: '{limit}' is not a limit such as 50/second"
            ) from None
    return limit


def _rate_limit_storage(value: Any) -> str:
    uri = str(value or "memory://")
    try:
        # Made and dropped: a scheme the limits library does not know, or whose client
        # library is not installed, is refused here rather than at the first request.
        storage_from_string(uri)
    except ConfigurationError:
        # Not the value: a store's address may hold a password.
        raise SettingsError(
            "SCREENING_RATE_LIMIT_STORAGE: must be memory:// or a store the limits library "
            "knows and whose client library is installed"
        ) from None
    return uri


def _trusted_proxies(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_TRUSTED_PROXIES:
        raise SettingsError(
            "SCREENING_TRUSTED_PROXIES: the number of reverse proxies in front "
            f"(0 to {MAX_TRUSTED_PROXIES})"
        )
    return value


def _metrics_key(value: Any) -> str | None:
    if not value:
        return None
    # str(): a digest of digits alone reaches here as the number JSON made of it.
    if not _SHA256_HEX.fullmatch(str(value)):
        raise SettingsError("SCREENING_METRICS_KEY: must be 64 lowercase hex digits (SHA-256)")
    return str(value)
