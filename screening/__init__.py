"""Spine screening: an informational questionnaire and rules service (Flask)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask

from screening import cli
from screening.rules.loader import RulesError
from screening.rules.rulebook import load_rules
from screening.services import cds as cds_clients
from screening.services import keys as api_keys
from screening.services import registry
from screening.services import triage
from screening.services import webhooks
from screening.web import api
from screening.web import cds
from screening.web import errors
from screening.web import jsonio
from screening.web import limits
from screening.web import observability
from screening.web import ops
from screening.web import proxies
from screening.web import review
from screening.web import transfers

#: The repository root: ``rules/`` and ``openapi.yaml`` live beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 64 * 1024


class StartupError(click.ClickException):
    """The configuration can't be used. A ClickException, so ``flask`` prints it plainly."""


def _database_url(app: Flask) -> str:
    """The configured database, or an SQLite file in the instance folder."""
    url = app.config.get("DATABASE_URL")
    if url:
        return str(url)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(app.instance_path) / 'screening.db'}"


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
        RATE_LIMIT="50/second",
        **review.CONFIG_DEFAULTS,
    )
    if test_config is None:
        app.config.from_prefixed_env("SCREENING")
    else:
        app.config.from_mapping(test_config)
    # orjson keeps keys in the order the contract lists them.
    jsonio.init_app(app)

    try:
        rulebook = load_rules(app.config["RULES_DIR"])
    except RulesError as exc:
        raise StartupError(
            f"SCREENING_RULES_DIR: the rules in {app.config['RULES_DIR']} can't be used:\n{exc}"
        ) from None

    try:
        keys = api_keys.parse_api_keys(app.config.get("API_KEYS") or "")
    except api_keys.KeyConfigError as exc:
        raise StartupError(str(exc)) from None

    try:
        # An endpoint may ask for any package's outcome: each package's screenings are sent.
        endpoints = webhooks.parse_endpoints(app.config.get("WEBHOOKS"), list(rulebook.outcomes))
        public_url = webhooks.parse_public_url(app.config.get("PUBLIC_URL"), endpoints)
        trusted = cds_clients.parse_cds_clients(app.config.get("CDS_CLIENTS"))
        if trusted and public_url is None:
            # A token's aud must be checked against our own address, not the Host header
            # a caller sends.
            raise cds_clients.CdsConfigError(
                "SCREENING_PUBLIC_URL: needed with SCREENING_CDS_CLIENTS: the address EHRs "
                "call the service at (such as https://screening.example.org), which their "
                "tokens' aud must name"
            )
        review_minutes = triage.parse_review_minutes(app.config.get("URGENT_REVIEW_MINUTES"))
    except ValueError as exc:
        raise StartupError(str(exc)) from None

    registry.install(
        app,
        rulebook=rulebook,
        catalogs=rulebook.catalogs,
        keys=keys,
        database_url=_database_url(app),
        endpoints=endpoints,
        public_url=public_url,
        review_minutes=review_minutes,
        cds_clients=trusted,
    )

    metrics_key = app.config.get("METRICS_KEY")
    if metrics_key and not re.fullmatch(r"[0-9a-f]{64}", str(metrics_key)):
        raise StartupError("SCREENING_METRICS_KEY: must be 64 lowercase hex digits (SHA-256)")

    errors.init_app(app)
    observability.init_app(app)
    transfers.init_app(app)
    try:
        proxies.init_app(app)
        limits.init_app(app)
    except (proxies.ProxyConfigError, limits.RateLimitConfigError) as exc:
        raise StartupError(str(exc)) from None
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(cds.bp)
    # Without SCREENING_SECRET_KEY the review pages answer 503 saying so; the API,
    # the CLI and the health checks need no secret.
    problem = review.config_problem(app)
    if problem is not None:
        raise StartupError(problem)
    review.init_app(app)
    app.cli.add_command(cli.rules_cli)
    app.cli.add_command(cli.keys_cli)
    app.cli.add_command(cli.db_cli)
    app.cli.add_command(cli.screenings_cli)
    app.cli.add_command(cli.webhooks_cli)
    return app
