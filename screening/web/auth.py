"""Bearer-token authentication of requests and role checks on views.

The keys themselves (parsing ``SCREENING_API_KEYS``, hashing, constant-time
lookup) live in ``screening.services.keys``; this module reads the request's
``Authorization`` header and answers 401 or 403.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any
from typing import TypeVar
from typing import cast

from flask import g
from flask import request

from screening import extension
from screening.services.callers import Caller
from screening.services.jwts import looks_like_jwt
from screening.services.keys import Principal
from screening.services.oauth import KeysUnavailable
from screening.services.oauth import TokenRefused
from screening.services.problems import ProblemError

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger(__name__)


def unauthorized(detail: str, error: str | None) -> ProblemError:
    """A 401 with its Bearer challenge (RFC 6750), naming ``error`` when there is one."""
    challenge = 'Bearer realm="screening"'
    if error:
        challenge += f', error="{error}"'
    return ProblemError(detail, status=401, headers={"WWW-Authenticate": challenge})


def presented_token() -> tuple[str, str]:
    """The Authorization header's scheme (lowercase; "" without the header) and token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return (scheme.lower() if header else ""), token.strip()


def current_caller() -> Caller | None:
    """Who is calling, as far as this request has found out (None: nobody known yet)."""
    return cast("Caller | None", g.get("caller"))


def set_caller(caller: Caller | None) -> None:
    """Record who is calling (once a token, a session or an EHR's JWT was checked)."""
    g.caller = caller


def _token_caller(token: str) -> Caller | None:
    """Who a bearer token names: an OAuth client for a JWT (never tried as a key), else
    the configured key with this token; None for neither."""
    if looks_like_jwt(token):
        try:
            client = extension.access_tokens().verify(token)
        except TokenRefused as exc:
            # The reason, never the token: for the operator, not the caller.
            logger.info("oauth: access token refused", extra={"reason": str(exc)})
            return None
        except KeysUnavailable:
            logger.warning("oauth: the issuer's keys could not be fetched")
            g.oauth_keys_unavailable = True
            return None
        return Caller.with_key(client, "oauth_token")
    found = extension.authenticator().identify(token)
    return None if found is None else Caller.with_key(found)


def identify_request() -> Principal | None:
    """Who the request's bearer token names (an API key, or an OAuth client whose access
    token was verified), if anyone; found once per request, which then has it as its
    caller."""
    if "caller" not in g:
        scheme, token = presented_token()
        set_caller(_token_caller(token) if scheme == "bearer" and token else None)
    caller = current_caller()
    return None if caller is None else caller.key


def authenticate() -> Principal:
    """The caller, from ``Authorization: Bearer``; 401 when missing or unknown (503 when
    an access token can't be checked because its issuer's keys can't be fetched)."""
    scheme, token = presented_token()
    if not scheme:
        raise unauthorized("Send an Authorization: Bearer token.", None)
    if scheme != "bearer" or not token:
        raise unauthorized(
            "Use the Bearer scheme: Authorization: Bearer <token>.", "invalid_request"
        )
    key = identify_request()
    if key is None:
        if g.get("oauth_keys_unavailable"):
            raise ProblemError(
                "Access tokens can't be checked now: the identity provider does not answer. "
                "Retry shortly.",
                status=503,
                headers={"Retry-After": "30"},
            )
        raise unauthorized("The token is not valid.", "invalid_token")
    return key


def authorize(key: Principal, roles: tuple[str, ...]) -> None:
    """403 unless ``key``'s role is one of ``roles``."""
    if key.role not in roles:
        raise ProblemError("This token's role may not use this route.", status=403)


def require(*roles: str) -> Callable[[F], F]:
    """Allow a view only to callers whose key has one of ``roles`` (else 401/403)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            authorize(authenticate(), roles)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorator


def current_key() -> Principal:
    """The key of the current request's caller (a view behind ``require`` has one)."""
    caller = current_caller()
    assert caller is not None and caller.key is not None, "a view without require()"
    return caller.key
