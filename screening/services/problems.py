"""The errors the services raise on purpose, each with the HTTP status it stands for.

All of them derive from ``ProblemError``; the web layer renders every one as an
RFC 9457 problem (``screening.web.errors``), the CLI as a message.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The problem type of answer and body validation errors (422).
VALIDATION_TYPE = "https://spine-screening.example/problems/validation"


class ProblemError(Exception):
    """Base of every error the service raises on purpose; becomes problem+json."""

    status = 400
    type = "about:blank"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.errors = errors
        self.headers = dict(headers or {})


class ValidationProblem(ProblemError):
    """Answers or body fields are invalid: 422 with ``errors`` by linkId or field."""

    status = 422
    type = VALIDATION_TYPE

    def __init__(self, errors: Mapping[str, list[str]], detail: str | None = None) -> None:
        count = len(errors)
        super().__init__(
            detail or f"{count} field{'s' if count != 1 else ''} did not pass validation.",
            errors=errors,
        )
