"""RFC 9457 problem details: the one error shape of every response.

Flask's own errors (404, 405, 413, and the 500 it raises for an unhandled
exception) go through the same handler as the service's, so a client never sees
an HTML error page, a stack trace, SQL or an echo of what it sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask
from flask import Response
from flask import current_app
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from screening.services.problems import ProblemError

PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    errors: Mapping[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build an ``application/problem+json`` response."""
    body: dict[str, object] = {
        "type": type_,
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = dict(errors)
    response = current_app.response_class(
        current_app.json.dumps(body), status=status, mimetype=PROBLEM_JSON
    )
    response.headers.update(headers or {})
    return response


# Details for Flask's own errors, written here so nothing from the request
# (a path, a method, a value) is repeated back.
_HTTP_DETAILS = {
    400: "The request could not be understood.",
    404: "Nothing is found at this address.",
    405: "This address does not accept that method.",
    413: "The request body is larger than 64 KiB.",
    415: "The Content-Type is not accepted here.",
    500: "Something went wrong on our side. The request was not completed.",
}


def _handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {}
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    detail = _HTTP_DETAILS.get(status, HTTP_STATUS_CODES.get(status, "Error") + ".")
    return problem_response(status, detail, headers=headers)


def _handle_problem(error: ProblemError) -> Response:
    return problem_response(
        error.status, error.detail, type_=error.type, errors=error.errors, headers=error.headers
    )


def init_app(app: Flask) -> None:
    """Register the problem+json handlers."""
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(ProblemError, _handle_problem)
