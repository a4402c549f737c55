"""CDS Hooks 2.0: a ``patient-view`` service that reads the patient's latest answers.

The EHR prefetches the patient's most recent completed QuestionnaireResponse to
our questionnaire, or passes ``fhirServer`` and ``fhirAuthorization`` for the
service to fetch it. This blueprint authenticates the caller and reads the request;
``CdsService.patient_view`` applies the same validation and rules as the API and
gives one card, or none when there is no response. Each card is stored by its uuid,
and the EHR's feedback on it is stored and shown on the review page.

EHRs authenticate with a JWT signed by their own key (``SCREENING_CDS_CLIENTS``;
checked in ``screening.services.cds``); clinician API keys keep working. Discovery
is public, but a JWT sent to it is checked like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any
from typing import TypeVar
from typing import cast

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from screening import extension
from screening.rules.rulebook import Rulebook
from screening.services.callers import Caller
from screening.services.cds import CdsClient
from screening.services.cds import PatientView
from screening.services.cds import TokenRefused
from screening.services.cds_cards import PREFETCH_KEY
from screening.services.cds_cards import prefetch_query
from screening.services.jwts import looks_like_jwt
from screening.services.problems import ProblemError
from screening.web import schemas
from screening.web.auth import authenticate
from screening.web.auth import authorize
from screening.web.auth import current_caller
from screening.web.auth import presented_token
from screening.web.auth import set_caller
from screening.web.auth import unauthorized
from screening.web.bodies import json_object

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("cds", __name__, url_prefix="/cds-services")

SERVICE_ID = "lumbar-rfa-screening"
HOOK = schemas.CDS_HOOK


def _service(rulebook: Rulebook) -> dict[str, object]:
    return {
        "hook": HOOK,
        "id": SERVICE_ID,
        "title": "Low back pain screening summary",
        "description": (
            "Shows the outcome of the patient's latest low back pain screening "
            f"({rulebook.ruleset.id} {rulebook.ruleset.version}) with the rules and sources "
            "behind it."
        ),
        "prefetch": {PREFETCH_KEY: prefetch_query(rulebook)},
        "usageRequirements": (
            "EHRs: register as a CDS client (iss and JWK Set) and send a signed JWT as "
            "Authorization: Bearer <JWT> (CDS Hooks 2.0). Others: a clinician API key."
        ),
    }


def _refused() -> ProblemError:
    # One answer for every failed check: nothing that tells a forger which one failed.
    return unauthorized("The token is not valid.", "invalid_token")


def _bearer_jwt() -> str | None:
    """The request's bearer token when it is shaped like a JWT (API keys have no dots)."""
    scheme, token = presented_token()
    return token if scheme == "bearer" and looks_like_jwt(token) else None


_told_links_off = False


def _public_url_for_links() -> str | None:
    """``SCREENING_PUBLIC_URL``, which a card's links start with. Without it cards have no
    links, which the log says once per process (at the first card, not at start-up, so
    that the commands' output stays theirs)."""
    global _told_links_off  # noqa: PLW0603 - once per process, for the operator
    public_url = extension.cds().public_url
    if public_url is None and not _told_links_off:
        _told_links_off = True
        logger.warning(
            "cds: SCREENING_PUBLIC_URL is not set: cards carry no links to the review pages"
        )
    return public_url


def _check_jwt(token: str) -> CdsClient:
    """The CDS client that signed ``token`` for this URL, else a bare 401."""
    # SCREENING_PUBLIC_URL, never the Host a caller sent (start-up requires it with clients).
    public_url = extension.cds().public_url
    if public_url is None:
        raise _refused()
    audience = public_url + request.path
    try:
        client = extension.cds().verify(token, audience)
    except TokenRefused as exc:
        # The reason, never the token: for the operator, not the caller.
        logger.info("cds: token refused", extra={"reason": str(exc)})
        raise _refused() from None
    set_caller(Caller.from_ehr(client))
    return client


def cds_caller(view: F) -> F:
    """Allow an EHR's signed JWT, or a clinician's API key or OAuth access token, as every
    route that takes a key does (the request's caller either way)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = _bearer_jwt()
        if token is not None and not extension.access_tokens().names_an_issuer(token):
            _check_jwt(token)
        else:
            authorize(authenticate(), ("clinician",))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def _caller() -> Caller:
    """The caller ``cds_caller`` let in: an EHR, or a clinician's key."""
    caller = current_caller()
    assert caller is not None, "a view without cds_caller"
    return caller


@bp.get("")
def discovery() -> Response:
    """CDS Hooks discovery: the one service this server offers."""
    token = _bearer_jwt()
    if token is not None:
        _check_jwt(token)
    return jsonify(services=[_service(extension.rulebook())])


@bp.post(f"/{SERVICE_ID}")
@cds_caller
def patient_view() -> Response:
    """One card for the latest completed response in the prefetch (or fetched from the
    EHR's FHIR server when not prefetched), or none."""
    _, raw = json_object()
    body = schemas.load(schemas.hook_request, raw)
    authorization = body.get("fhirAuthorization")
    caller = _caller()
    card = extension.cds().patient_view(
        PatientView(
            caller=caller.actor_id,
            client=caller.client,
            hook_instance=body["hookInstance"],
            patient_id=body["context"]["patientId"],
            prefetched=(body.get("prefetch") or {}).get(PREFETCH_KEY),
            fhir_server=body.get("fhirServer"),
            access_token=None if authorization is None else authorization["access_token"],
            public_url=_public_url_for_links(),
        )
    )
    return jsonify(cards=[] if card is None else [card])


@bp.post(f"/{SERVICE_ID}/feedback")
@cds_caller
def feedback() -> Response:
    """CDS Hooks 2.0 feedback on the cards shown: stored and audited, each entry."""
    _, body = json_object()
    rows = schemas.load(schemas.feedback_request, body)["feedback"]
    unknown = extension.cds().record_feedback(_caller().actor_id, rows)
    return jsonify(received=len(rows), unknown_cards=unknown)
