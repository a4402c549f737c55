"""The language a request asks for, and the texts in it."""

from __future__ import annotations

from flask import request

from screening.rules.i18n import Catalog
from screening.rules.i18n import negotiate
from screening.services import registry


def catalog(hint: str | None = None) -> Catalog:
    """The texts in the language this request asks for.

    ``?lang=`` wins, then ``hint`` (a language named inside the body), then
    Accept-Language; anything unsupported falls back to English.
    """
    wanted = request.args.get("lang") or hint
    return registry.catalogs()[negotiate(wanted, request.headers.get("Accept-Language"))]
