"""The review list, a screening's detail page and the "Mark reviewed" form.

The pages call the same service as the API, so a page read, a list and a
review are stored and audited exactly as through ``/v1``.
"""

from __future__ import annotations

from typing import Any

from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from screening import extension
from screening.services.problems import ValidationProblem
from screening.web import schemas
from screening.web.auth import current_key
from screening.web.review import words
from screening.web.review.blueprint import PAGE_SIZE
from screening.web.review.blueprint import bp
from screening.web.review.blueprint import error_page

_FILTERS = ("outcome", "review_status", "ruleset", "sort", "patient_ref")


def _list_query() -> dict[str, str]:
    """The list's query without empty values (the forms' "All" choices)."""
    names = (*_FILTERS, "limit", "cursor")
    return {name: request.args[name] for name in names if request.args.get(name)}


def _api_query(query: dict[str, str]) -> dict[str, str]:
    """The page's query as the API's: its ``ruleset`` choice is ``id`` or ``id/version``."""
    api = dict(query)
    if "ruleset" in api:
        ruleset_id, _, version = api["ruleset"].partition("/")
        api["ruleset"] = ruleset_id
        if version:
            api["ruleset_version"] = version
    return api


@bp.get("/")
def index() -> ResponseReturnValue:
    """Screenings newest first or in triage order, with filters and a next page."""
    query = _list_query()
    query.setdefault("limit", str(PAGE_SIZE))
    params = schemas.load(schemas.list_query, _api_query(query))
    page = extension.screenings().list(params, current_key())
    # Any: url_for's keyword arguments mix typed options with free query values.
    filters: dict[str, Any] = {k: v for k, v in query.items() if k in _FILTERS}
    if query["limit"] != str(PAGE_SIZE):
        filters["limit"] = query["limit"]
    rows = [words.list_entry(row) for row in page.rows]
    rulebook = extension.rulebook()
    # Every package's outcomes, each in the words of a package that declares it.
    outcomes = [
        words.outcome(code, package)
        for code in rulebook.outcomes
        if (package := rulebook.outcome_package(code)) is not None
    ]
    next_url = None
    if page.next_cursor is not None:
        next_url = url_for("review.index", **filters, cursor=page.next_cursor)
    first_url = url_for("review.index", **filters) if "cursor" in query else None
    return render_template(
        "review/list.html",
        rows=rows,
        outcomes=outcomes,
        rulesets=words.ruleset_choices(),
        selected=filters,
        triage=params["sort"] == "triage",
        next_url=next_url,
        first_url=first_url,
    )


def _detail_context(screening_id: str) -> dict[str, object]:
    """The detail page's words: the screening and the EHR's feedback on its cards."""
    # Read (and audited) as the API reads it for clinicians.
    context = words.detail_context(extension.screenings().read(screening_id, current_key()))
    context["card_feedback"] = words.card_feedback(extension.cds().card_feedback(screening_id))
    return context


@bp.get("/<screening_id>")
def detail(screening_id: str) -> ResponseReturnValue:
    """One screening: outcome, basis, patient summary, answers, trace, reviews."""
    context = _detail_context(screening_id)
    return render_template("review/detail.html", **context, note="", error=None)


@bp.post("/<screening_id>/review")
def mark_reviewed(screening_id: str) -> ResponseReturnValue:
    """Record a review through the API's own code path, then show the screening."""
    # Browsers send line breaks as CRLF; store them as the API would receive them.
    note = request.form.get("note", "").replace("\r\n", "\n")
    body = {"note": note} if note.strip() else {}
    try:
        params = schemas.load(schemas.review_request, body)
        extension.screenings().review(screening_id, params["note"], current_key())
    except ValidationProblem as exc:
        message = " ".join(" ".join(msgs) for msgs in (exc.errors or {}).values())
        context = _detail_context(screening_id)
        return render_template("review/detail.html", **context, note=note, error=message), 422
    flash("Marked reviewed.", "info")
    return redirect(url_for("review.detail", screening_id=screening_id, _anchor="review"), code=303)


@bp.get("/rulesets/<ruleset_id>/<version>")
def ruleset(ruleset_id: str, version: str) -> ResponseReturnValue:
    """One rule package: its status, approval, changelog and rules."""
    package = extension.rulebook().package(ruleset_id, version)
    if package is None:
        return error_page(404, "Rules not found", "No loaded rules have this id and version.")
    return render_template("review/ruleset.html", **words.ruleset_context(package))
