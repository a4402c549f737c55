"""Who is signed in to the review pages: sign-in, sign-out, and the check on every page.

The signed session cookie holds a random session token (besides the CSRF token
and flashed messages), never the API token or its hash. The session lives in the
database (``screening.services.sessions``): signing out deletes it, and it ends
after the idle timeout or, however busy, at its absolute lifetime. Every request
also checks the session's key against the configured keys, so removing or
rotating a key (or the secret key) ends its sessions at their next request.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue

from screening import extension
from screening.services.callers import Caller
from screening.services.identity import Person
from screening.services.keys import ApiKey
from screening.services.keys import Principal
from screening.web.auth import current_caller
from screening.web.auth import current_key
from screening.web.auth import set_caller
from screening.web.review.blueprint import bp
from screening.web.review.blueprint import csrf
from screening.web.review.blueprint import error_page

_SESSION_TOKEN = "review_session"
#: The ID token of a person's sign-in, kept for the logout hint (in the signed cookie).
ID_TOKEN = "oidc_id_token"


def _fingerprint(key: ApiKey) -> str:
    """A value that changes when the key's token changes, and reveals nothing of it."""
    secret = current_app.secret_key
    assert secret is not None
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(secret_bytes, b"review-session:" + key.digest, hashlib.sha256).hexdigest()


def _configured_key(name: str, check: str) -> ApiKey | None:
    """The clinician key called ``name``, if it still has the token it signed in with."""
    for key in extension.authenticator().keys:
        if (
            key.name == name
            and key.role == "clinician"
            and hmac.compare_digest(_fingerprint(key), check)
        ):
            return key
    return None


def signed_in_key() -> Principal | None:
    """The clinician signed in to this request's review session, if it is still live.

    Looked up once per request (the rate limiter asks before the pages do); a
    session whose key was removed or rotated is ended on the spot.
    """
    if "caller" not in g:
        found: Principal | None = None
        token = session.get(_SESSION_TOKEN) if current_app.secret_key else None
        if isinstance(token, str):
            sessions = extension.sessions()
            live = sessions.resume(token)
            if live is not None and live.person is not None:
                found = live.person
            elif live is not None:
                found = _configured_key(live.key_name or "", live.key_check or "")
                if found is None:
                    sessions.end(token)
        set_caller(None if found is None else Caller.with_key(found, "review_session"))
    caller = current_caller()
    return None if caller is None else caller.key


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a page of this blueprint, never another site."""
    default = url_for("review.index")
    if not target:
        return default
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith("/review/")
        # Backslashes (read as slashes by browsers) and control characters (which
        # can't go into a Location header) never appear in this blueprint's URLs.
        or any(char == "\\" or ord(char) < 32 or ord(char) == 127 for char in target)
    ):
        return default
    return target


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    """Refuse to work without a secret key, check CSRF, then require a clinician."""
    if request.endpoint == "review.static":
        return None
    if not current_app.secret_key:
        current_app.logger.error("SCREENING_SECRET_KEY is not set: the review pages are off")
        return error_page(
            503,
            "The review pages are turned off",
            "This server has no SCREENING_SECRET_KEY setting, which the review pages need "
            "to sign people in safely. Ask the team that runs the service to set it.",
        )
    if request.endpoint == "review.backchannel_logout":
        # The provider posts it, with no cookie or form of ours: its signed token is the proof.
        return None
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()
    if request.endpoint in ("review.login", "review.login_oidc", "review.oidc_callback"):
        return None
    key = signed_in_key()
    if key is None:
        if session.get(_SESSION_TOKEN) is not None or request.method == "POST":
            flash("You were signed out. Sign in again to continue; nothing was saved.", "error")
        session.pop(_SESSION_TOKEN, None)
        target = None
        if request.method == "GET":
            target = request.full_path if request.query_string else request.path
        # 303: after a refused post, the browser fetches the sign-in page with GET.
        return redirect(url_for("review.login", next=target), code=303)
    return None


def _in_words(duration: timedelta) -> str:
    """A session time as the sign-in page says it: "30 minutes", "8 hours"."""
    minutes = int(duration.total_seconds() // 60)
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes // 60} hours"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _login_page(target: str, error: str | None, status: int) -> ResponseReturnValue:
    """The sign-in page: the identity provider's button and, where it is offered, the token
    form (with an error when the last try failed)."""
    sessions = extension.sessions()
    identity = extension.identity()
    page = render_template(
        "review/login.html",
        next=target,
        error=error,
        idle=_in_words(sessions.idle),
        lifetime=_in_words(sessions.lifetime),
        provider_name=None if identity is None else identity.config.name,
        token_sign_in=extension.settings().review_token_sign_in,
    )
    return page, status


def end_session() -> None:
    """End this browser's review session, if any, and forget everything in its cookie."""
    previous = session.get(_SESSION_TOKEN)
    if isinstance(previous, str):
        extension.sessions().end(previous)
    session.clear()


def start_session(principal: Person | None = None, token: str | None = None) -> None:
    """A fresh review session for a person (or, with ``token``, the one already made for a
    key): nothing from before signing in carries over, and a session this browser still
    had is ended rather than left behind."""
    end_session()
    session.permanent = True
    if principal is not None:
        token = extension.sessions().start_person(principal)
    session[_SESSION_TOKEN] = token


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form; only clinician tokens sign in."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if signed_in_key() is not None:
            return redirect(target)
        return _login_page(target, None, 200)
    if not extension.settings().review_token_sign_in:
        return error_page(
            403,
            "Sign in with your organization",
            "Signing in with an access token is turned off here. Use the sign-in button.",
        )
    token = request.form.get("token", "").strip()
    key = extension.authenticator().identify(token) if token else None
    error, status = None, 200
    if not token:
        error, status = "Enter your access token.", 422
    elif key is None:
        error, status = "This access token is not recognised. Check it and try again.", 422
    elif key.role != "clinician":
        error, status = (
            "This is a patient portal token. Only clinician tokens can sign in here.",
            403,
        )
    if error is not None or key is None:
        if token:
            # identity-v1.md: refusals are audited, by the key's name where one was found.
            actor = "key:unknown" if key is None else key.actor_id
            extension.screenings().audit(actor, "sign_in_refused")
        return _login_page(target, error, status)
    start_session(token=extension.sessions().start(key.name, _fingerprint(key)))
    extension.screenings().audit(key.actor_id, "sign_in")
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out: end the session in the database, so no copy of the cookie still works;
    a person signed in through the identity provider is sent there to sign out too."""
    token = session.get(_SESSION_TOKEN)
    id_token = session.get(ID_TOKEN)
    if isinstance(token, str):
        extension.sessions().end(token)
    who = current_key()
    sid = who.sid if isinstance(who, Person) else None
    extension.screenings().audit(who.actor_id, "sign_out", sid=sid)
    session.clear()
    identity = extension.identity()
    if identity is not None and isinstance(id_token, str):
        public_url = extension.settings().public_url
        ends = identity.end_session_url(id_token, f"{public_url}/review/login")
        if ends is not None:
            return redirect(ends, code=303)
    flash("You are signed out.", "info")
    return redirect(url_for("review.login"), code=303)
