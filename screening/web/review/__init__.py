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

from flask import Flask

from screening.services.config import Settings

# Imported for their routes, which they add to the blueprint.
from screening.web.review import oidc  # noqa: F401
from screening.web.review import pages  # noqa: F401
from screening.web.review import session  # noqa: F401
from screening.web.review.blueprint import CONFIG_DEFAULTS
from screening.web.review.blueprint import bp
from screening.web.review.blueprint import csrf
from screening.web.review.session import signed_in_key

__all__ = ["CONFIG_DEFAULTS", "init_app", "signed_in_key"]


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
    app.register_blueprint(bp)
