"""Access to what ``create_app`` loaded, for views and commands."""

from __future__ import annotations

from typing import cast

from flask import current_app

from screening.loader import Rulebook

RULES_EXTENSION = "screening.rules"


def rulebook() -> Rulebook:
    """The questionnaire and ruleset the running app loaded at start-up."""
    return cast(Rulebook, current_app.extensions[RULES_EXTENSION])
