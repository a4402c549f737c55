"""Flask commands: ``flask --app screening rules check|test|evaluate``."""

from __future__ import annotations

import json
import sys
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import click
from flask.cli import AppGroup

from screening.rules.cases import run_cases
from screening.rules.engine import evaluate as evaluate_answers
from screening.rules.i18n import load_translations
from screening.rules.loader import RulesError
from screening.rules.loader import load_rules
from screening.services import registry
from screening.services.keys import ROLES
from screening.services.keys import KeyConfigError
from screening.services.keys import new_token
from screening.services.keys import parse_api_keys
from screening.services.keys import token_digest

rules_cli = AppGroup("rules", help="Check, test and apply the questionnaire and rules.")


@rules_cli.command("check")
def check_command() -> None:
    """Validate the questionnaire, ruleset and cases files and their cross-references."""
    rulebook = registry.rulebook()
    # The app already loaded the rules (start-up stops on any problem); load
    # again so an edit made since start-up is checked too.
    try:
        rulebook = load_rules(rulebook.directory)
        catalogs = load_translations(rulebook.directory, rulebook.questionnaire, rulebook.ruleset)
        run_cases(rulebook)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    q, r = rulebook.questionnaire, rulebook.ruleset
    click.echo(
        f"OK: questionnaire {q.id} {q.version} ({len(q.items)} items), "
        f"ruleset {r.id} {r.version} ({len(r.rules)} rules), sha256 {r.sha256}; "
        f"languages {', '.join(sorted(catalogs))}"
    )


@rules_cli.command("test")
def test_command() -> None:
    """Run the rule cases and report rule coverage; exit 1 on any failure or gap."""
    rulebook = registry.rulebook()
    try:
        report = run_cases(rulebook)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'rule':<32} {'matched':>8} {'not matched':>12}")
    for rule in rulebook.ruleset.rules:
        click.echo(
            f"{rule.id:<32} {report.matched.get(rule.id, 0):>8} "
            f"{report.not_matched.get(rule.id, 0):>12}"
        )
    for line in report.failures + report.uncovered:
        click.echo(f"FAIL {line}", err=True)
    covered = len(rulebook.ruleset.rules) - len({u.split("'")[1] for u in report.uncovered})
    click.echo(
        f"{report.passed} passed, {len(report.failures)} failed; "
        f"{covered}/{len(rulebook.ruleset.rules)} rules covered both ways"
    )
    if not report.ok:
        sys.exit(1)


@rules_cli.command("evaluate")
@click.argument("source", type=click.File("r", encoding="utf-8"))
def evaluate_command(source: Any) -> None:
    """Apply the rules to SOURCE (a file, or - for standard input).

    SOURCE holds one answers object or a JSON array of them. Prints one JSON line
    per object: the result, or {"errors": {...}} for an invalid one (then exit 1).
    """
    try:
        data = json.load(source)
    except ValueError:
        raise click.ClickException("the input is not valid JSON") from None
    submissions = data if isinstance(data, list) else [data]
    rulebook = registry.rulebook()
    failed = False
    for answers in submissions:
        clean, errors = rulebook.questionnaire.validate(answers)
        if errors:
            failed = True
            click.echo(json.dumps({"errors": errors}))
        else:
            click.echo(json.dumps(evaluate_answers(clean, rulebook.ruleset)))
    if failed:
        sys.exit(1)


keys_cli = AppGroup("keys", help="Create API keys.")


@keys_cli.command("new")
@click.option("--name", required=True, help="A name for the caller, kept in the audit log.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the caller may do.")
def new_key_command(name: str, role: str) -> None:
    """Print a new random token once, and the SCREENING_API_KEYS entry for it."""
    token = new_token()
    entry = f"{name}:{role}:{token_digest(token)}"
    try:
        parse_api_keys(entry)
    except KeyConfigError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1], param_hint="--name") from None
    click.echo(f"token (shown once; give it to the caller): {token}")
    click.echo(f"SCREENING_API_KEYS entry: {entry}")


db_cli = AppGroup("db", help="Manage the database schema.")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade_command(revision: str) -> None:
    """Apply schema migrations up to REVISION."""
    registry.screenings().upgrade_database(revision)
    click.echo(f"database at revision {revision}")


screenings_cli = AppGroup("screenings", help="Look after stored screenings.")


@screenings_cli.command("purge")
@click.option(
    "--older-than",
    "days",
    required=True,
    type=click.IntRange(min=1),
    help="Delete screenings created more than DAYS days ago.",
)
def purge_command(days: int) -> None:
    """Delete old screenings, their reviews and idempotency records (audited as 'cli')."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    deleted = registry.screenings().purge(cutoff, actor="cli")
    click.echo(
        f"deleted {deleted} screening{'s' if deleted != 1 else ''} created before "
        f"{cutoff.isoformat(timespec='seconds')}"
    )
