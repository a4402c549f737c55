"""SMART App Launch of the review pages from the EHR (identity-v1.md part 2): ``/smart/launch``
and ``/smart/callback``. A launched session is a review session that opens on the launch's
patient and may be framed by that EHR (``web.review.blueprint`` reads ``LAUNCHED_BY``)."""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from screening import extension
from screening.services.identity import PendingSignIn
from screening.services.identity import ProviderUnavailable
from screening.services.identity import SignInRefused
from screening.web.review.blueprint import LAUNCH_PATIENT
from screening.web.review.blueprint import LAUNCHED_BY
from screening.web.review.blueprint import LAUNCHING
from screening.web.review.blueprint import error_page
from screening.web.review.blueprint import security_headers
from screening.web.review.session import end_session
from screening.web.review.session import start_session

logger = logging.getLogger(__name__)

bp = Blueprint("smart", __name__, url_prefix="/smart")

#: Where the pending launch waits in the session cookie, with the EHR it came from.
_PENDING = "smart_pending"


@bp.after_request
def _headers(response: Response) -> Response:
    return security_headers(response)


@bp.get("/launch")
def launch() -> ResponseReturnValue:
    """An EHR launch: sign the clinician in at the EHR's authorization server."""
    iss = request.args.get("iss", "")
    launcher = extension.smart_launch(iss)
    context = request.args.get("launch", "")
    if launcher is None or not context:
        return _launch_refused(
            "unlisted iss or no launch",
            "The review pages were opened by a system they are not set up for. Ask your "
            "organization's IT team to register it.",
        )
    try:
        url, pending = launcher.start_launch(context, iss)
    except ProviderUnavailable:
        return _provider_down()
    except SignInRefused as refused:
        return _launch_refused(
            refused.reason, "The EHR's SMART configuration can't be used to sign in safely."
        )
    # A launch starts afresh: whatever session this browser had ends, so a link to a launch
    # can't make a session signed in elsewhere framable.
    end_session()
    session[_PENDING] = {**pending.as_dict(), "iss": launcher.client.iss}
    # From here the browser is inside the EHR's frame (another site): the cookie that keeps
    # the pending launch must be sent there too (SameSite=None). Nothing is framable yet.
    session[LAUNCHING] = True
    return redirect(url, code=303)


@bp.get("/callback")
def callback() -> ResponseReturnValue:
    """Finish a launch: check it as an OpenID Connect sign-in, then open the patient's list."""
    kept = session.pop(_PENDING, None)
    session.pop(LAUNCHING, None)
    iss = kept.get("iss") if isinstance(kept, dict) else None
    launcher = extension.smart_launch(iss) if isinstance(iss, str) else None
    pending = PendingSignIn.from_dict(kept)
    if launcher is None:
        extension.screenings().audit("smart:unknown", "sign_in_refused")
        return _refused_page(400)
    try:
        person, patient = launcher.finish_launch(request.args, pending)
    except ProviderUnavailable:
        return _provider_down()
    except SignInRefused as refused:
        logger.info("smart: sign-in refused", extra={"reason": refused.reason})
        extension.screenings().audit(
            refused.subject or "smart:unknown", "sign_in_refused", sid=refused.sid
        )
        return _refused_page(refused.status)
    start_session(person)
    session[LAUNCHED_BY] = launcher.client.iss
    session[LAUNCH_PATIENT] = patient
    extension.screenings().audit(person.name, "sign_in", sid=person.sid)
    return redirect(url_for("review.index", patient_ref=patient), code=303)


def _launch_refused(reason: str, detail: str) -> ResponseReturnValue:
    """A launch this service won't follow: logged, audited, and a page with no redirect."""
    logger.info("smart: launch refused", extra={"reason": reason})
    extension.screenings().audit("smart:unknown", "launch_refused")
    return error_page(400, "This EHR can't open these pages", detail)


def _provider_down() -> ResponseReturnValue:
    return error_page(
        503,
        "The EHR's sign-in is not available right now",
        "Your EHR's sign-in service does not answer. Try again in a few minutes.",
    )


def _refused_page(status: int) -> ResponseReturnValue:
    if status == 403:
        return error_page(
            403,
            "These pages are for clinicians",
            "The EHR opened these pages for someone who is not a practitioner, so they "
            "can't be shown.",
        )
    return error_page(
        400,
        "Opening from the EHR did not finish",
        "The launch could not be checked, so you are not signed in. Open the pages from the "
        "EHR again.",
    )
