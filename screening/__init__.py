"""Spine screening: an informational questionnaire and rules service (Flask)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask

from screening import cli
from screening import extension
from screening.services import config
from screening.services import registry
from screening.web import api
from screening.web import cds
from screening.web import errors
from screening.web import jsonio
from screening.web import limits
from screening.web import observability
from screening.web import ops
from screening.web import proxies
from screening.web import review
from screening.web import smart
from screening.web import transfers

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
        OPENAPI_PATH=str(PROJECT_ROOT / "openapi.yaml"),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        **review.CONFIG_DEFAULTS,
    )
    if test_config is None:
        app.config.from_prefixed_env("SCREENING")
    else:
        app.config.from_mapping(test_config)
    # orjson keeps keys in the order the contract lists them.
    jsonio.init_app(app)

    try:
        settings = config.read_settings(app.config, PROJECT_ROOT / "rules")
    except config.SettingsError as exc:
        raise StartupError(str(exc)) from None
    instance = Path(app.instance_path)
    if settings.database_url is None:
        instance.mkdir(parents=True, exist_ok=True)
    extension.init_app(app, registry.build(settings, instance / "screening.db"))

    errors.init_app(app)
    observability.init_app(app)
    transfers.init_app(app)
    proxies.init_app(app, settings.trusted_proxies)
    limits.init_app(app, settings.rate_limit, settings.rate_limit_storage)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(cds.bp)
    app.register_blueprint(smart.bp)
    # Without SCREENING_SECRET_KEY the review pages answer 503 saying so; the API,
    # the CLI and the health checks need no secret.
    review.init_app(app, settings)
    app.cli.add_command(cli.rules_cli)
    app.cli.add_command(cli.keys_cli)
    app.cli.add_command(cli.db_cli)
    app.cli.add_command(cli.screenings_cli)
    app.cli.add_command(cli.webhooks_cli)
    return app
