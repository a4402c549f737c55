"""Clinician review pages under ``/review/``: sign in, triage, read the basis, mark reviewed.

Server-rendered HTML for people; ``/v1`` stays the interface for programs. The
pages call the same service functions as the API, so a page read, a list and a
review are stored and audited exactly as through ``/v1``.

The session cookie holds the key's name, its role and a fingerprint of its
token hash, never the token. Every request looks the key up again in the
configured keys, so removing or rotating a key signs its clinician out.
"""

from __future__ import annotations

from flask import Flask

# Imported for their routes, which they add to the blueprint.
from screening.web.review import pages  # noqa: F401
from screening.web.review import session  # noqa: F401
from screening.web.review.blueprint import CONFIG_DEFAULTS
from screening.web.review.blueprint import bp
from screening.web.review.blueprint import csrf
from screening.web.review.blueprint import secret_key_problem

__all__ = ["CONFIG_DEFAULTS", "init_app", "secret_key_problem"]


def init_app(app: Flask) -> None:
    """Set the cookie's Secure flag, start CSRF protection and add the pages."""
    # Browsers send Secure cookies over HTTPS only; plain http is for local work.
    app.config["SESSION_COOKIE_SECURE"] = not (
        app.debug or app.testing or bool(app.config.get("REVIEW_INSECURE_COOKIES"))
    )
    csrf.init_app(app)
    app.register_blueprint(bp)
