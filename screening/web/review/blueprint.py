"""The review pages' blueprint, its cookie and security settings, and its error pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint
from flask import render_template
from flask import request
from flask import session
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from screening import extension
from screening.services.config import DEFAULT_IDLE
from screening.services.problems import ProblemError
from screening.timestamps import rfc3339

#: Defaults for ``create_app`` to apply before the ``SCREENING_*`` settings.
CONFIG_DEFAULTS: dict[str, Any] = {
    # Flask's own default is 31 days; the settings read this one unless it is set.
    "PERMANENT_SESSION_LIFETIME": DEFAULT_IDLE,
    "SESSION_REFRESH_EACH_REQUEST": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # CSRF is checked by the review pages only: the JSON API authenticates with
    # bearer tokens, which a browser never sends on its own, so it needs none.
    "WTF_CSRF_CHECK_DEFAULT": False,
}
PAGE_SIZE = 20

# No inline script or style anywhere, and nothing from other origins.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # "same-origin", not "no-referrer": Flask-WTF checks the Referer of HTTPS posts.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


bp = Blueprint(
    "review",
    __name__,
    url_prefix="/review",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
# A time in a ``<time datetime>`` attribute: RFC 3339, as the API writes it.
bp.add_app_template_filter(rfc3339, "rfc3339")
csrf = CSRFProtect()


def _sign_out_origins() -> list[str]:
    """Where signing out may send the browser: the identity provider's end-session address
    (a form's redirect is held to ``form-action`` too), when OpenID Connect is on."""
    identity = extension.identity()
    if identity is None:
        return []
    origins = {_origin(identity.config.issuer)}
    endpoint = identity.cached_end_session_endpoint()
    if endpoint is not None:
        origins.add(_origin(endpoint))
    return sorted(origins)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


#: In a session an EHR launched (SMART): the EHR's FHIR base, and the launch's patient.
LAUNCHED_BY = "smart_iss"
LAUNCH_PATIENT = "smart_patient"
#: A launch under way (in the EHR's frame, before its sign-in finished): the cookie must
#: reach the frame, but nothing may be framed yet.
LAUNCHING = "smart_launching"


def launch_frame_ancestors() -> tuple[str, ...]:
    """The origins that may frame the pages: the launching EHR's, in a session it launched;
    none anywhere else."""
    iss = session.get(LAUNCHED_BY)
    launcher = extension.smart_launch(iss) if isinstance(iss, str) else None
    return () if launcher is None else launcher.client.frame_ancestors


def security_headers(response: Response) -> Response:
    """The pages' security headers: no framing but by the EHR that launched the session,
    forms that post here (and sign-out's redirect to the identity provider)."""
    policy = CONTENT_SECURITY_POLICY
    extra = _sign_out_origins()
    if extra:
        policy = policy.replace("form-action 'self'", "form-action 'self' " + " ".join(extra))
    ancestors = launch_frame_ancestors()
    if ancestors:
        policy = policy.replace("frame-ancestors 'none'", "frame-ancestors " + " ".join(ancestors))
    response.headers.setdefault("Content-Security-Policy", policy)
    for name, value in SECURITY_HEADERS.items():
        if name == "X-Frame-Options" and ancestors:
            continue  # frame-ancestors says who may frame; DENY would forbid them all
        response.headers.setdefault(name, value)
    return response


@bp.after_request
def _security_headers(response: Response) -> Response:
    """Security headers on every page, and no caching of pages with patient data."""
    security_headers(response)
    if request.endpoint != "review.static":
        response.headers["Cache-Control"] = "no-store"
    return response


# --- errors --------------------------------------------------------------------------


def error_page(status: int, title: str, detail: str) -> ResponseReturnValue:
    """An HTML error page with the security headers of every page."""
    return render_template("review/error.html", title=title, detail=detail), status


# Written here so that nothing from the request is repeated back.
_HTTP_DETAILS = {
    405: "This address can't be used that way.",
    413: "The form was too large to accept. Nothing was saved.",
    429: "Too many requests in a short time. Wait a moment, then try again.",
    500: "Something went wrong on our side. If you were saving a review, check whether it "
    "was recorded before trying again.",
}


@bp.errorhandler(CSRFError)
def _csrf_failed(error: CSRFError) -> ResponseReturnValue:
    """A form without a valid CSRF token: say so plainly; nothing was saved."""
    return error_page(
        400,
        "This form could not be accepted",
        "The form had expired or did not come from these pages, so nothing was saved. "
        "Go back, reload the page and try again.",
    )


@bp.errorhandler(ProblemError)
def _problem(error: ProblemError) -> ResponseReturnValue:
    """The service's errors (unknown screening, unusable filters) as an HTML page."""
    if error.status == 404:
        return error_page(404, "Screening not found", "There is no screening with this address.")
    detail = error.detail
    if error.errors:
        detail += " " + " ".join(
            f"{field}: {' '.join(msgs)}" for field, msgs in error.errors.items()
        )
    return error_page(error.status, "This request can't be used", detail)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    """Flask's own errors on these pages, as an HTML page."""
    status = error.code or 500
    return error_page(status, error.name, _HTTP_DETAILS.get(status, _HTTP_DETAILS[500]))
