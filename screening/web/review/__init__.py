"""Clinician review pages under ``/review/``: sign in, triage, read the basis, mark reviewed.

Server-rendered HTML for people; ``/v1`` stays the interface for programs. The
pages call the same service functions as the API, so a page read, a list and a
review are stored and audited exactly as through ``/v1``.

The session cookie holds a random session token, never the API token; the
session itself lives in the database (``screening.services.sessions``), so
signing out, an idle half hour or the absolute lifetime end it for good. Every
request also looks the key up again in the configured keys, so removing or
rotating a key signs its clinician out.
"""

from __future__ import annotations

import flask
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.sessions import SessionMixin
from flask.wrappers import Response

from screening.services.config import Settings

# Imported for their routes, which they add to the blueprint.
from screening.web.review import oidc  # noqa: F401
from screening.web.review import pages  # noqa: F401
from screening.web.review import session  # noqa: F401
from screening.web.review.blueprint import CONFIG_DEFAULTS
from screening.web.review.blueprint import LAUNCHED_BY
from screening.web.review.blueprint import LAUNCHING
from screening.web.review.blueprint import bp
from screening.web.review.blueprint import csrf
from screening.web.review.session import signed_in_key

__all__ = ["CONFIG_DEFAULTS", "init_app", "signed_in_key"]


class ReviewSessionInterface(SecureCookieSessionInterface):
    """The signed session cookie, sent ``SameSite=None; Secure; Partitioned`` in a session an
    EHR launched (its pages are framed by the EHR, another site) and as configured everywhere
    else."""

    def save_session(self, app: Flask, cookie: SessionMixin, response: Response) -> None:
        # Read past the session's access tracking: looking must not add Vary: Cookie.
        launched = isinstance(cookie, dict) and (
            dict.__contains__(cookie, LAUNCHED_BY) or dict.__contains__(cookie, LAUNCHING)
        )
        flask.g.review_launched = launched
        super().save_session(app, cookie, response)

    def get_cookie_samesite(self, app: Flask) -> str | None:
        if flask.g.get("review_launched"):
            return "None"
        return super().get_cookie_samesite(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(flask.g.get("review_launched")) or super().get_cookie_secure(app)

    def get_cookie_partitioned(self, app: Flask) -> bool:
        # Partitioned (CHIPS): kept for this EHR's site alone, and sent in its frame where
        # browsers block other third-party cookies.
        return bool(flask.g.get("review_launched")) or super().get_cookie_partitioned(app)


def init_app(app: Flask, settings: Settings) -> None:
    """Set the cookie's Secure flag and lifetime, start CSRF protection and add the pages."""
    # Browsers send Secure cookies over HTTPS only; plain http is for local work.
    app.config["SESSION_COOKIE_SECURE"] = not (
        app.debug or app.testing or settings.review_insecure_cookies
    )
    # The database ends sessions (session.py); the cookie's own expiry only tells the
    # browser to forget it. Every request re-signs it, so that expiry counts idle time.
    app.config["PERMANENT_SESSION_LIFETIME"] = settings.session_idle
    csrf.init_app(app)
    app.session_interface = ReviewSessionInterface()
    app.register_blueprint(bp)
