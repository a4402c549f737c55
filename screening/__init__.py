"""Spine screening: an informational questionnaire and rules service (Flask)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask

from screening import api
from screening import auth
from screening import cli
from screening import current
from screening import errors
from screening import ops
from screening.loader import RulesError
from screening.loader import load_rules

#: The repository root: ``rules/`` and ``openapi.yaml`` live beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 64 * 1024


class StartupError(click.ClickException):
    """The configuration can't be used. A ClickException, so ``flask`` prints it plainly."""


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the app: configuration, rules, routes, error handlers and commands.

    Configuration comes from ``SCREENING_*`` environment variables, or from
    ``test_config`` when given. The rules are loaded and checked here, so a
    broken rules folder stops start-up with a message naming file, rule and item.
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        RULES_DIR=str(PROJECT_ROOT / "rules"),
        OPENAPI_PATH=str(PROJECT_ROOT / "openapi.yaml"),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    if test_config is None:
        app.config.from_prefixed_env("SCREENING")
    else:
        app.config.from_mapping(test_config)
    # Keep JSON keys in the order the contract lists them.
    app.json.sort_keys = False  # type: ignore[attr-defined]

    try:
        app.extensions[current.RULES_EXTENSION] = load_rules(app.config["RULES_DIR"])
    except RulesError as exc:
        raise StartupError(
            f"SCREENING_RULES_DIR: the rules in {app.config['RULES_DIR']} can't be used:\n{exc}"
        ) from None

    try:
        keys = auth.parse_api_keys(app.config.get("API_KEYS") or "")
    except auth.KeyConfigError as exc:
        raise StartupError(str(exc)) from None
    app.extensions[auth.AUTH_EXTENSION] = auth.Authenticator(keys)

    errors.init_app(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.cli.add_command(cli.rules_cli)
    app.cli.add_command(cli.keys_cli)
    return app
