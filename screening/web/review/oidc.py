"""Signing clinicians in through the hospital's identity provider (OpenID Connect), and the
provider's back-channel logout (identity-v1.md part 1).

The pending sign-in (state, nonce, PKCE verifier, the page to go back to) waits in the
browser's signed session cookie and is taken out at the callback, so it binds the sign-in to
this browser and is used once. A sign-in that fails a check gets a page, is audited, and
starts no session.
"""

from __future__ import annotations

import logging
from datetime import UTC
from datetime import datetime

from flask import jsonify
from flask import redirect
from flask import request
from flask import session
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import NotFound

from screening import extension
from screening.services.identity import OidcSignIn
from screening.services.identity import PendingSignIn
from screening.services.identity import ProviderUnavailable
from screening.services.identity import SignInRefused
from screening.web.review.blueprint import bp
from screening.web.review.blueprint import error_page
from screening.web.review.session import ID_TOKEN
from screening.web.review.session import safe_next
from screening.web.review.session import start_session

logger = logging.getLogger(__name__)

#: Where the pending sign-in waits in the session cookie.
_PENDING = "oidc_pending"


def _identity() -> OidcSignIn:
    """OpenID Connect sign-in; 404 when it is off."""
    identity = extension.identity()
    if identity is None:
        raise NotFound()
    return identity


def _provider_down() -> ResponseReturnValue:
    return error_page(
        503,
        "Sign-in is not available right now",
        "Your organization's sign-in service does not answer. Try again in a few minutes. "
        "Nothing else is affected.",
    )


@bp.get("/login/oidc")
def login_oidc() -> ResponseReturnValue:
    """Start signing in at the identity provider (authorization code, PKCE S256)."""
    identity = _identity()
    try:
        url, pending = identity.start(safe_next(request.args.get("next")))
    except ProviderUnavailable:
        return _provider_down()
    session[_PENDING] = pending.as_dict()
    return redirect(url, code=303)


@bp.get("/oidc/callback")
def oidc_callback() -> ResponseReturnValue:
    """Finish signing in: check the answer and the ID token, then start a new session."""
    identity = _identity()
    pending = PendingSignIn.from_dict(session.pop(_PENDING, None))
    try:
        person, id_token = identity.finish(request.args, pending)
    except ProviderUnavailable:
        return _provider_down()
    except SignInRefused as refused:
        # The reason for the operator; the person gets a page that says what to do.
        logger.info("oidc: sign-in refused", extra={"reason": refused.reason})
        extension.screenings().audit(
            refused.subject or "oidc:unknown", "sign_in_refused", sid=refused.sid
        )
        if refused.status == 403:
            return error_page(
                403,
                "You can't review screenings",
                "You signed in, but your account does not have the clinician role these "
                "pages need. Ask your organization's IT team for access.",
            )
        return error_page(
            400,
            "Sign-in did not finish",
            "The sign-in could not be checked, so you are not signed in. Start again from "
            "the sign-in page.",
        )
    start_session(person)
    session[ID_TOKEN] = id_token
    extension.screenings().audit(person.name, "sign_in", sid=person.sid)
    assert pending is not None
    return redirect(pending.next_page, code=303)


@bp.post("/oidc/backchannel-logout")
def backchannel_logout() -> ResponseReturnValue:
    """OIDC Back-Channel Logout 1.0: end every session of the token's ``sid`` (or ``sub``).

    The provider posts it with no cookie or form of ours (the guard lets it through
    without CSRF or a session): its signed token is the proof."""
    identity = _identity()
    token = request.form.get("logout_token", "")
    try:
        sid, sub, jti, expires = identity.check_logout_token(token)
    except (SignInRefused, ProviderUnavailable) as exc:
        logger.info("oidc: logout token refused", extra={"reason": str(exc)})
        extension.screenings().audit("oidc:unknown", "backchannel_logout_refused")
        return _invalid_request()
    issuer = identity.config.issuer
    if not extension.sessions().first_logout(issuer, jti, datetime.fromtimestamp(expires, UTC)):
        logger.info("oidc: logout token refused", extra={"reason": "jti seen before"})
        extension.screenings().audit("oidc:unknown", "backchannel_logout_refused", sid=sid)
        return _invalid_request()
    person_id = None if sub is None else f"oidc:{sub}"
    ended = extension.sessions().end_people(sid=sid, person_id=person_id)
    extension.screenings().audit(person_id or "oidc:unknown", "backchannel_logout", sid=sid)
    logger.info("oidc: back-channel logout", extra={"sessions_ended": ended})
    response = jsonify({})
    response.headers["Cache-Control"] = "no-store"
    return response


def _invalid_request() -> ResponseReturnValue:
    response = jsonify(error="invalid_request")
    response.headers["Cache-Control"] = "no-store"
    return response, 400
