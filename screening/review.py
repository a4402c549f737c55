"""Clinician review pages under ``/review/``: sign in, triage, read the basis, mark reviewed.

Server-rendered HTML for people; ``/v1`` stays the interface for programs. The
pages call the same service functions as the API, so a page read, a list and a
review are stored and audited exactly as through ``/v1``.

The session cookie holds the key's name, its role and a fingerprint of its
token hash, never the token. Every request looks the key up again in the
configured keys, so removing or rotating a key signs its clinician out.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import cast
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from screening import current
from screening import service
from screening.auth import AUTH_EXTENSION
from screening.auth import ApiKey
from screening.auth import Authenticator
from screening.auth import current_key
from screening.errors import ProblemError
from screening.errors import ValidationProblem
from screening.questionnaire import Item
from screening.schemas import NOTE_LIMIT

#: Signed in clinicians are signed out after this long without a request.
IDLE_TIMEOUT = timedelta(minutes=30)
#: Defaults for ``create_app`` to apply before the ``SCREENING_*`` settings.
CONFIG_DEFAULTS: dict[str, Any] = {
    "PERMANENT_SESSION_LIFETIME": IDLE_TIMEOUT,
    # Every request re-signs the cookie, so the lifetime counts idle time.
    "SESSION_REFRESH_EACH_REQUEST": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # CSRF is checked by the review pages only: the JSON API authenticates with
    # bearer tokens, which a browser never sends on its own, so it needs none.
    "WTF_CSRF_CHECK_DEFAULT": False,
}
PAGE_SIZE = 20
MIN_SECRET_LENGTH = 32

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

# The condition language's operators, as a clinician would read them after
# "Needs the answer ...".
_OPERATOR_WORDS = {
    "equals": "to be",
    "one_of": "to be one of",
    "contains_any": "to include any of",
    "less_than": "to be less than",
    "at_most": "to be at most",
    "greater_than": "to be more than",
    "at_least": "to be at least",
}

_SESSION_NAME = "review_key"
_SESSION_ROLE = "review_role"
_SESSION_CHECK = "review_check"

bp = Blueprint(
    "review",
    __name__,
    url_prefix="/review",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
csrf = CSRFProtect()


def secret_key_problem(app: Flask) -> str | None:
    """Why the configured ``SECRET_KEY`` can't sign cookies, or None when it can (or is unset)."""
    secret = app.config.get("SECRET_KEY")
    if not secret:
        return None
    if not isinstance(secret, str | bytes) or len(secret) < MIN_SECRET_LENGTH:
        return (
            f"SCREENING_SECRET_KEY: use at least {MIN_SECRET_LENGTH} random characters, "
            "for example the output of: python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return None


def init_app(app: Flask) -> None:
    """Set the cookie's Secure flag, start CSRF protection and add the pages."""
    # Browsers send Secure cookies over HTTPS only; plain http is for local work.
    app.config["SESSION_COOKIE_SECURE"] = not (
        app.debug or app.testing or bool(app.config.get("REVIEW_INSECURE_COOKIES"))
    )
    csrf.init_app(app)
    app.register_blueprint(bp)


# --- who is signed in ----------------------------------------------------------------


def _authenticator() -> Authenticator:
    """The configured API keys."""
    return cast(Authenticator, current_app.extensions[AUTH_EXTENSION])


def _fingerprint(key: ApiKey) -> str:
    """A value that changes when the key's token changes, and reveals nothing of it."""
    secret = current_app.secret_key
    assert secret is not None
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(secret_bytes, b"review-session:" + key.digest, hashlib.sha256).hexdigest()


def _signed_in_key() -> ApiKey | None:
    """The clinician key this session belongs to, if it is still configured."""
    name = session.get(_SESSION_NAME)
    check = session.get(_SESSION_CHECK)
    if not isinstance(name, str) or not isinstance(check, str):
        return None
    for key in _authenticator().keys:
        if (
            key.name == name
            and key.role == "clinician"
            and hmac.compare_digest(_fingerprint(key), check)
        ):
            return key
    return None


def _safe_next(target: str | None) -> str:
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
        return _error_page(
            503,
            "The review pages are turned off",
            "This server has no SCREENING_SECRET_KEY setting, which the review pages need "
            "to sign people in safely. Ask the team that runs the service to set it.",
        )
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()
    if request.endpoint == "review.login":
        return None
    key = _signed_in_key()
    if key is None:
        if session.get(_SESSION_NAME) is not None or request.method == "POST":
            flash("You were signed out. Sign in again to continue; nothing was saved.", "error")
        session.pop(_SESSION_NAME, None)
        session.pop(_SESSION_ROLE, None)
        session.pop(_SESSION_CHECK, None)
        target = None
        if request.method == "GET":
            target = request.full_path if request.query_string else request.path
        # 303: after a refused post, the browser fetches the sign-in page with GET.
        return redirect(url_for("review.login", next=target), code=303)
    # Where the API keeps its caller, so the access log names the clinician too.
    g.api_key = key
    return None


@bp.after_request
def _security_headers(response: Response) -> Response:
    """Security headers on every page, and no caching of pages with patient data."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "review.static":
        response.headers["Cache-Control"] = "no-store"
    return response


# --- errors --------------------------------------------------------------------------


def _error_page(status: int, title: str, detail: str) -> ResponseReturnValue:
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
    return _error_page(
        400,
        "This form could not be accepted",
        "The form had expired or did not come from these pages, so nothing was saved. "
        "Go back, reload the page and try again.",
    )


@bp.errorhandler(ProblemError)
def _problem(error: ProblemError) -> ResponseReturnValue:
    """The service's errors (unknown screening, unusable filters) as an HTML page."""
    if error.status == 404:
        return _error_page(404, "Screening not found", "There is no screening with this address.")
    detail = error.detail
    if error.errors:
        detail += " " + " ".join(
            f"{field}: {' '.join(msgs)}" for field, msgs in error.errors.items()
        )
    return _error_page(error.status, "This request can't be used", detail)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    """Flask's own errors on these pages, as an HTML page."""
    status = error.code or 500
    return _error_page(status, error.name, _HTTP_DETAILS.get(status, _HTTP_DETAILS[500]))


# --- words for the pages ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutcomeView:
    """An outcome as the pages show it."""

    code: str
    label: str
    indicator: str

    @property
    def urgent(self) -> bool:
        """Whether the rules data marks this outcome critical (help needed today)."""
        return self.indicator == "critical"


@dataclass(frozen=True, slots=True)
class Citation:
    """A source a finding rests on."""

    id: str
    text: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A matched rule with its clinician text and sources."""

    rule: str
    title: str
    text: str
    sources: tuple[Citation, ...]
    deciding: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """One answered question in words."""

    question: str
    words: str


@dataclass(frozen=True, slots=True)
class AnswerGroup:
    """The answers of one questionnaire section."""

    title: str
    answers: tuple[Answer, ...]


@dataclass(frozen=True, slots=True)
class TraceStep:
    """One comparison the rules made, in words."""

    question: str
    test: str
    answer: str
    held: bool


@dataclass(frozen=True, slots=True)
class TraceRule:
    """One rule of the trace."""

    rule: str
    title: str
    matched: bool
    steps: tuple[TraceStep, ...]


def _outcome(code: str) -> OutcomeView:
    """An outcome code with its label and indicator from the rules data."""
    outcome = current.rulebook().ruleset.outcomes.get(code)
    if outcome is None:
        return OutcomeView(code, code, "info")
    return OutcomeView(code, outcome.label, outcome.indicator)


def _rule_title(rule_id: str) -> str:
    """A rule's title, or its id for a rule the loaded ruleset no longer has."""
    for rule in current.rulebook().ruleset.rules:
        if rule.id == rule_id:
            return rule.title
    return rule_id


def _item(link_id: str) -> Item | None:
    """The questionnaire item with this linkId, if the loaded questionnaire has it."""
    return current.rulebook().questionnaire.by_link_id.get(link_id)


def _question(link_id: str) -> str:
    """The question as the patient read it, or its linkId."""
    item = _item(link_id)
    return item.text if item is not None else link_id


def _words(link_id: str, value: Any) -> str:
    """An answer (or an expected value) in the questionnaire's words."""
    if value is None:
        return "No answer"
    item = _item(link_id)
    if item is not None:
        try:
            return item.display(value)
        except KeyError:
            # A code this questionnaire no longer has: show the code itself.
            pass
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def _when(stamp: str) -> str:
    """An RFC 3339 time as "21 Nov 2025, 09:06 UTC"."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment.strftime("%d %b %Y, %H:%M UTC")


def _citations(ids: list[str], stored: dict[str, str]) -> tuple[Citation, ...]:
    """Source ids with their citations: as stored with the result, else from the ruleset."""
    sources = current.rulebook().ruleset.sources
    citations = []
    for source_id in ids:
        text = stored.get(source_id)
        if text is None:
            source = sources.get(source_id)
            text = source.citation if source is not None else ""
        citations.append(Citation(source_id, text))
    return tuple(citations)


def _findings(
    entries: list[dict[str, Any]], stored: dict[str, str], decided_by: str | None
) -> list[Finding]:
    """Stored findings (or notes) with titles and citations; mark the deciding one."""
    return [
        Finding(
            rule=entry["rule"],
            title=entry.get("title") or _rule_title(entry["rule"]),
            text=entry["text"],
            sources=_citations(entry.get("sources", []), stored),
            deciding=entry["rule"] == decided_by,
        )
        for entry in entries
    ]


def _answer_groups(answers: dict[str, Any]) -> list[AnswerGroup]:
    """Every answer under its questionnaire section, in questionnaire order."""
    questionnaire = current.rulebook().questionnaire
    groups = []
    for group in questionnaire.groups:
        rows = tuple(
            Answer(item.text, _words(item.link_id, answers[item.link_id]))
            for item in questionnaire.items
            if item.group == group.link_id and item.link_id in answers
        )
        if rows:
            groups.append(AnswerGroup(group.text, rows))
    # Answers to items this questionnaire no longer has (an older version).
    other = tuple(
        Answer(link_id, _words(link_id, value))
        for link_id, value in answers.items()
        if link_id not in questionnaire.by_link_id
    )
    if other:
        groups.append(AnswerGroup("Other answers", other))
    return groups


def _trace(trace: list[dict[str, Any]]) -> list[TraceRule]:
    """The stored trace in words: each rule, each comparison, and whether it held."""
    rules = []
    for entry in trace:
        steps = []
        for step in entry.get("conditions", []):
            link_id = step["linkId"]
            operator = step["operator"]
            if operator == "answered":
                test = "Needs an answer" if step["expected"] else "Needs no answer"
            else:
                words = _OPERATOR_WORDS.get(operator, operator)
                test = f"Needs the answer {words} {_words(link_id, step['expected'])}"
            steps.append(
                TraceStep(_question(link_id), test, _words(link_id, step["actual"]), step["held"])
            )
        rules.append(
            TraceRule(entry["rule"], _rule_title(entry["rule"]), entry["matched"], tuple(steps))
        )
    return rules


def _detail_context(view: dict[str, Any]) -> dict[str, Any]:
    """What the detail page shows, in words, from the full view of a screening."""
    clinician = view["summary"]["clinician"]
    stored_sources = {s["id"]: s["citation"] for s in clinician.get("sources", [])}
    ruleset = current.rulebook().ruleset
    return {
        "screening": view,
        "received": _when(view["created_at"]),
        "outcome": _outcome(view["outcome"]),
        "decided_by": _rule_title(view["decided_by"]),
        "findings": _findings(clinician["findings"], stored_sources, view["decided_by"]),
        "notes": _findings(clinician.get("notes", []), stored_sources, None),
        "key_answers": [
            Answer(_question(entry["linkId"]), entry["display"])
            for entry in clinician.get("key_answers", [])
        ],
        "answer_groups": _answer_groups(view["answers"]),
        "patient": view["summary"]["patient"],
        "trace": _trace(view["trace"]),
        "history": [
            {"at": _when(entry["at"]), "by": entry["by"], "note": entry["note"]}
            for entry in view["review"]["history"]
        ],
        "other_ruleset": view["ruleset"]["sha256"] != ruleset.sha256,
        "current_ruleset_version": ruleset.version,
        "note_limit": NOTE_LIMIT,
    }


# --- pages ---------------------------------------------------------------------------------


def _login_page(target: str, error: str | None, status: int) -> ResponseReturnValue:
    """The sign-in form, with an error when the last try failed."""
    minutes = int(current_app.permanent_session_lifetime.total_seconds() // 60)
    page = render_template("review/login.html", next=target, error=error, idle_minutes=minutes)
    return page, status


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form; only clinician tokens sign in."""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if _signed_in_key() is not None:
            return redirect(target)
        return _login_page(target, None, 200)
    token = request.form.get("token", "").strip()
    key = _authenticator().identify(token) if token else None
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
        return _login_page(target, error, status)
    # A fresh session: nothing from before signing in carries over.
    session.clear()
    session.permanent = True
    session[_SESSION_NAME] = key.name
    session[_SESSION_ROLE] = key.role
    session[_SESSION_CHECK] = _fingerprint(key)
    current.store().audit(key.name, "sign_in", [])
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out and forget the session."""
    current.store().audit(current_key().name, "sign_out", [])
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("review.login"), code=303)


def _list_query() -> dict[str, str]:
    """The list's query without empty values (the forms' "All" choices)."""
    names = ("outcome", "review_status", "limit", "cursor")
    return {name: request.args[name] for name in names if request.args.get(name)}


@bp.get("/")
def index() -> ResponseReturnValue:
    """Screenings newest first, with filters and a next page."""
    query = _list_query()
    query.setdefault("limit", str(PAGE_SIZE))
    page = service.list_screenings(current.store(), current.rulebook(), query, current_key())
    # Any: url_for's keyword arguments mix typed options with free query values.
    filters: dict[str, Any] = {k: v for k, v in query.items() if k in ("outcome", "review_status")}
    if query["limit"] != str(PAGE_SIZE):
        filters["limit"] = query["limit"]
    rows = [
        {
            **item,
            "received": _when(item["created_at"]),
            "outcome_view": _outcome(item["outcome"]),
            "decided_by_title": _rule_title(item["decided_by"]),
        }
        for item in page["items"]
    ]
    outcomes = [_outcome(code) for code in current.rulebook().ruleset.outcomes]
    next_url = None
    if page["next_cursor"] is not None:
        next_url = url_for("review.index", **filters, cursor=page["next_cursor"])
    first_url = url_for("review.index", **filters) if "cursor" in query else None
    return render_template(
        "review/list.html",
        rows=rows,
        outcomes=outcomes,
        selected=filters,
        next_url=next_url,
        first_url=first_url,
    )


@bp.get("/<screening_id>")
def detail(screening_id: str) -> ResponseReturnValue:
    """One screening: outcome, basis, patient summary, answers, trace, reviews."""
    view, _ = service.read_screening(current.store(), screening_id, current_key())
    return render_template("review/detail.html", **_detail_context(view), note="", error=None)


@bp.post("/<screening_id>/review")
def mark_reviewed(screening_id: str) -> ResponseReturnValue:
    """Record a review through the API's own code path, then show the screening."""
    # Browsers send line breaks as CRLF; store them as the API would receive them.
    note = request.form.get("note", "").replace("\r\n", "\n")
    body = {"note": note} if note.strip() else {}
    try:
        service.review_screening(current.store(), screening_id, body, current_key())
    except ValidationProblem as exc:
        message = " ".join(" ".join(msgs) for msgs in (exc.errors or {}).values())
        view, _ = service.read_screening(current.store(), screening_id, current_key())
        context = _detail_context(view)
        return render_template("review/detail.html", **context, note=note, error=message), 422
    flash("Marked reviewed.", "info")
    return redirect(url_for("review.detail", screening_id=screening_id, _anchor="review"), code=303)
