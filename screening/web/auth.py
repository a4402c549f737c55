"""Bearer-token authentication of requests and role checks on views.

The keys themselves (parsing ``SCREENING_API_KEYS``, hashing, constant-time
lookup) live in ``screening.services.keys``; this module reads the request's
``Authorization`` header and answers 401 or 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from typing import TypeVar
from typing import cast

from flask import g
from flask import request

from screening import extension
from screening.services.callers import Caller
from screening.services.keys import ApiKey
from screening.services.problems import ProblemError

F = TypeVar("F", bound=Callable[..., Any])


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


def identify_request() -> ApiKey | None:
    """The configured key matching the request's bearer token, if any (looked up once per
    request, which then has that key as its caller)."""
    if "caller" not in g:
        scheme, token = presented_token()
        found = None
        if scheme == "bearer" and token:
            found = extension.authenticator().identify(token)
        set_caller(None if found is None else Caller.with_key(found))
    caller = current_caller()
    return None if caller is None else caller.key


def authenticate() -> ApiKey:
    """The caller's key, from ``Authorization: Bearer``; 401 when missing or unknown."""
    scheme, token = presented_token()
    if not scheme:
        raise unauthorized("Send an Authorization: Bearer token.", None)
    if scheme != "bearer" or not token:
        raise unauthorized(
            "Use the Bearer scheme: Authorization: Bearer <token>.", "invalid_request"
        )
    key = identify_request()
    if key is None:
        raise unauthorized("The token is not valid.", "invalid_token")
    return key


def authorize(key: ApiKey, roles: tuple[str, ...]) -> None:
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


def current_key() -> ApiKey:
    """The key of the current request's caller (a view behind ``require`` has one)."""
    caller = current_caller()
    assert caller is not None and caller.key is not None, "a view without require()"
    return caller.key
