"""The language a request asks for, and the texts in it."""

from __future__ import annotations

from flask import request

from screening.rules.i18n import Catalog
from screening.rules.i18n import negotiate
from screening.services import registry


def catalog(hint: str | None = None) -> Catalog:
    """The texts in the language this request asks for.

    ``?lang=`` wins, then Accept-Language; ``hint`` (a language named inside the body,
    such as a QuestionnaireResponse's ``language``) counts only when the request has no
    Accept-Language at all (ehr-v1.md). Anything unsupported falls back to English.
    """
    header = request.headers.get("Accept-Language")
    return registry.catalogs()[
        negotiate(request.args.get("lang"), hint if header is None else header)
    ]
