"""Access to what ``create_app`` loaded, for views and commands."""

from __future__ import annotations

from typing import cast

from flask import current_app
from flask import request

from screening.i18n import Catalog
from screening.i18n import negotiate
from screening.loader import Rulebook
from screening.store import Store

RULES_EXTENSION = "screening.rules"
STORE_EXTENSION = "screening.store"
I18N_EXTENSION = "screening.i18n"


def rulebook() -> Rulebook:
    """The questionnaire and ruleset the running app loaded at start-up."""
    return cast(Rulebook, current_app.extensions[RULES_EXTENSION])


def store() -> Store:
    """The app's database access."""
    return cast(Store, current_app.extensions[STORE_EXTENSION])


def catalog(hint: str | None = None) -> Catalog:
    """The texts in the language this request asks for.

    ``?lang=`` wins, then ``hint`` (a language named inside the body), then
    Accept-Language; anything unsupported falls back to English.
    """
    catalogs = cast(dict[str, Catalog], current_app.extensions[I18N_EXTENSION])
    wanted = request.args.get("lang") or hint
    return catalogs[negotiate(wanted, request.headers.get("Accept-Language"))]
