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

from screening.services import registry

# Imported for their routes, which they add to the blueprint.
from screening.web.review import pages  # noqa: F401
from screening.web.review import session  # noqa: F401
from screening.web.review.blueprint import CONFIG_DEFAULTS
from screening.web.review.blueprint import bp
from screening.web.review.blueprint import config_problem
from screening.web.review.blueprint import csrf
from screening.web.review.blueprint import session_times
from screening.web.review.session import signed_in_key

__all__ = ["CONFIG_DEFAULTS", "config_problem", "init_app", "signed_in_key"]


def init_app(app: Flask) -> None:
    """Set the cookie's Secure flag, keep sessions, start CSRF protection and add the pages.

    Call ``config_problem`` first: the settings are taken as valid here.
    """
    # Browsers send Secure cookies over HTTPS only; plain http is for local work.
    app.config["SESSION_COOKIE_SECURE"] = not (
        app.debug or app.testing or bool(app.config.get("REVIEW_INSECURE_COOKIES"))
    )
    idle, lifetime = session_times(app)
    registry.install_sessions(app, idle=idle, lifetime=lifetime)
    csrf.init_app(app)
    app.register_blueprint(bp)
