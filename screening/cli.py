"""Flask commands: ``flask --app screening rules|keys|db|screenings|webhooks ...``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import orjson
from flask.cli import AppGroup
from prometheus_client import start_http_server

from screening import extension
from screening.records import Result
from screening.rules.cases import run_cases
from screening.rules.diff import diff_packages
from screening.rules.diff import diff_text
from screening.rules.i18n import DEFAULT
from screening.rules.loader import RulesError
from screening.rules.replay import Replay
from screening.rules.results import EngineResult
from screening.rules.results import RulesetName
from screening.rules.rulebook import case_problems
from screening.rules.rulebook import load_package
from screening.rules.rulebook import load_rules
from screening.services.delivery import DEFAULT_LEASE_SECONDS
from screening.services.delivery import MIN_LEASE_SECONDS
from screening.services.keys import ROLES
from screening.services.keys import KeyConfigError
from screening.services.keys import new_token
from screening.services.keys import parse_api_keys
from screening.services.keys import token_digest
from screening.services.problems import ValidationProblem

rules_cli = AppGroup("rules", help="Check, test and apply the questionnaire and rules.")


@rules_cli.command("check")
def check_command() -> None:
    """Validate every package: its files, cross-references, translations and package.yaml."""
    rulebook = extension.rulebook()
    # The app already loaded the rules (start-up stops on any problem); load
    # again so an edit made since start-up is checked too.
    try:
        rulebook = load_rules(rulebook.directory)
        # Loading ran the cases of active packages; an author also hears of the others'.
        problems = [
            line
            for package in rulebook.packages
            if not package.cases_must_pass
            for line in case_problems(package)
        ]
        if problems:
            raise RulesError(problems)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    for package in rulebook.sorted_packages():
        q, r = package.questionnaire, package.ruleset
        default = ", default" if package.default else ""
        click.echo(
            f"OK: {_shown(package.directory)}: "
            f"questionnaire {q.id} {q.version} ({len(q.items)} items), "
            f"ruleset {r.id} {r.version} ({len(r.rules)} rules), sha256 {r.sha256}; "
            f"{package.status}{default}; languages {', '.join(sorted(package.catalogs))}"
        )


def _shown(path: Path) -> str:
    """A folder relative to the working directory when it is under it, else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@rules_cli.command("test")
def test_command() -> None:
    """Run every package's rule cases and report rule coverage; exit 1 on any failure or gap."""
    ok = True
    for package in extension.rulebook().sorted_packages():
        try:
            report = run_cases(package)
        except RulesError as exc:
            raise click.ClickException(str(exc)) from None
        rules = package.ruleset.rules
        click.echo(f"{package.describe()} ({package.status}): {_shown(package.cases_path)}")
        click.echo(f"{'rule':<32} {'matched':>8} {'not matched':>12}")
        for rule in rules:
            click.echo(
                f"{rule.id:<32} {report.matched.get(rule.id, 0):>8} "
                f"{report.not_matched.get(rule.id, 0):>12}"
            )
        for line in report.failures + report.uncovered:
            click.echo(f"FAIL {package.describe()}: {line}", err=True)
        covered = len(rules) - len({u.split("'")[1] for u in report.uncovered})
        click.echo(
            f"{report.passed} passed, {len(report.failures)} failed; "
            f"{covered}/{len(rules)} rules covered both ways"
        )
        click.echo()
        ok = ok and report.ok
    if not ok:
        sys.exit(1)


@rules_cli.command("diff")
@click.argument("old", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
def diff_command(old: Path, new: Path, output: str) -> None:
    """Every change from package folder OLD to NEW: items, rules and texts. Reads only."""
    try:
        before, after = load_package(old), load_package(new)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    diff = diff_packages(
        (before.questionnaire, before.ruleset), (after.questionnaire, after.ruleset)
    )
    if output == "json":
        click.echo(json.dumps(diff, indent=2, ensure_ascii=False, default=str))
        return
    for line in diff_text(diff, before.describe(), after.describe()):
        click.echo(line)


@rules_cli.command("replay")
@click.argument("candidate", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--since", type=click.DateTime(), help="Only screenings stored at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Only screenings stored before (UTC).")
@click.option(
    "--answers-of",
    "answers_of",
    metavar="VERSION",
    help="Replay the screenings of this earlier version of the candidate's questionnaire "
    "whose answers are valid for the candidate's version (for a new questionnaire version, "
    "which has no screenings of its own yet).",
)
@click.option(
    "--decided-by",
    "decided_by",
    metavar="RULESET_ID",
    help="Only screenings a version of this ruleset decided (leaves out another profile's "
    "screenings of the same questionnaire, whose differences are the profile's, not the "
    "change's).",
)
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
def replay_command(
    candidate: Path,
    since: datetime | None,
    until: datetime | None,
    answers_of: str | None,
    decided_by: str | None,
    output: str,
) -> None:
    """Re-decide every stored screening of CANDIDATE's questionnaire version with its
    ruleset and report what would change. Reads only; streams in bounded memory."""
    try:
        package = load_package(candidate)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    q = package.questionnaire
    stored = (q.id, answers_of or q.version)
    rows = extension.screenings().replay_rows(
        stored,
        since.replace(tzinfo=UTC) if since else None,
        until.replace(tzinfo=UTC) if until else None,
        ruleset_id=decided_by,
    )
    replay = Replay(package.ruleset, q if answers_of else None)
    if output == "json":
        _replay_json(replay, rows)
    else:
        over = f"{stored[0]} {stored[1]}"
        if decided_by:
            over += f" decided by {decided_by}"
        if answers_of:
            over += f", whose answers are valid for version {q.version}"
        _replay_text(replay, rows, package.describe(), over)


def _replay_json(replay: Replay, rows: Any) -> None:
    """One JSON object, written as it goes: the changes stream, the counts come last."""
    candidate = replay.summary()["candidate"]
    click.echo(f'{{"candidate": {json.dumps(candidate)}, "changes": [', nl=False)
    first = True
    for row in rows:
        change = replay.add(*row)
        if change is not None:
            click.echo(("" if first else ", ") + json.dumps(change), nl=False)
            first = False
    totals = {k: v for k, v in replay.summary().items() if k != "candidate"}
    click.echo("], " + json.dumps(totals)[1:])


def _replay_text(replay: Replay, rows: Any, name: str, questionnaire: str) -> None:
    click.echo(f"Replay of {name} over stored screenings of questionnaire {questionnaire}")
    click.echo("")
    header = f"{'screening':<32}  {'from':<26} {'to':<26} {'decided by (from -> to)'}"
    shown = False
    for row in rows:
        change = replay.add(*row)
        if change is None:
            continue
        if not shown:
            click.echo("Changes:")
            click.echo(header)
            shown = True
        click.echo(
            f"{change['id']:<32}  {change['from']:<26} {change['to']:<26} "
            f"{change['decided_by_from']} -> {change['decided_by_to']}"
        )
    summary = replay.summary()
    if shown:
        click.echo("")
    click.echo(f"{summary['screenings']} screenings replayed, {summary['changed']} would change.")
    if "not_replayed" in summary:
        left = summary["not_replayed"]
        items = ", ".join(f"{link_id}: {n}" for link_id, n in left["items"].items())
        click.echo(
            f"{left['count']} not replayed: the candidate's questionnaire needs answers they "
            f"lack ({items or 'none'})."
        )
    click.echo("")
    click.echo(f"{'from':<26} {'to':<26} {'count':>9}")
    for t in summary["transitions"]:
        click.echo(f"{t['from']:<26} {t['to']:<26} {t['count']:>9}")


#: Result lines written to standard output at once (each is about 8 kB with its trace).
_LINES_PER_WRITE = 256


def _ruleset_reference(value: str | None) -> dict[str, str] | None:
    """``ID`` or ``ID:VERSION`` as the API's ``ruleset`` reference."""
    if value is None:
        return None
    ruleset_id, _, version = value.partition(":")
    return {"id": ruleset_id} if not version else {"id": ruleset_id, "version": version}


def _result_line(result: Result, ruleset: RulesetName) -> EngineResult:
    """``rules evaluate``'s line for one result: what the engine gives, rules named last."""
    return {
        "outcome": result.outcome,
        "decided_by": result.decided_by,
        "matched_rules": list(result.matched_rules),
        "summary": result.summary,
        "trace": list(result.trace),
        "ruleset": ruleset,
    }


@rules_cli.command("evaluate")
@click.argument("source", type=click.File("rb"))
@click.option(
    "--ruleset",
    "ruleset_option",
    metavar="ID[:VERSION]",
    help="The active package to apply, as the API's ruleset field names it "
    "(default: the one the API would choose).",
)
@click.option(
    "--questionnaire",
    "questionnaire_option",
    metavar="VERSION",
    help="The served questionnaire version the answers are to (default: the newest).",
)
def evaluate_command(
    source: Any, ruleset_option: str | None, questionnaire_option: str | None
) -> None:
    """Apply the rules to SOURCE (a file, or - for standard input).

    SOURCE holds one answers object or a JSON array of them. Prints one JSON line
    per object: the result, or {"errors": {...}} for an invalid one (then exit 1).
    Each goes through the API's submission path: the same package choice, answer
    checks and rules (English summaries).
    """
    screenings = extension.screenings()
    questionnaire = None
    if questionnaire_option is not None:
        served_id = extension.rulebook().questionnaire.id
        questionnaire = {"id": served_id, "version": questionnaire_option}
    ruleset = _ruleset_reference(ruleset_option)
    try:
        package = screenings.choose(questionnaire, ruleset)
    except ValidationProblem as exc:
        field, messages = next(iter((exc.errors or {}).items()))
        raise click.BadParameter(messages[0], param_hint=f"--{field}") from None
    # Every object names the package chosen once, exactly, as an API envelope would.
    envelope: dict[str, object] = {
        "questionnaire": {"id": package.questionnaire.id, "version": package.questionnaire.version},
        "ruleset": {"id": package.id, "version": package.version},
        "patient_ref": None,
    }
    catalog = extension.catalogs()[DEFAULT]
    # orjson, and output written in blocks rather than echoed line by line: with
    # the standard library's encoder and click.echo, writing the results cost
    # more than evaluating them (see bench/engine.py).
    try:
        data = orjson.loads(source.read())
    except orjson.JSONDecodeError:
        raise click.ClickException("the input is not valid JSON") from None
    submissions = data if isinstance(data, list) else [data]
    output = sys.stdout.buffer
    failed = False
    lines: list[bytes] = []
    decided = package.ruleset
    named: RulesetName = {"id": decided.id, "version": decided.version, "sha256": decided.sha256}
    for answers in submissions:
        try:
            result = screenings.check_submission({**envelope, "answers": answers}, catalog).result
        except ValidationProblem as exc:
            failed = True
            lines.append(orjson.dumps({"errors": exc.errors}))
        else:
            # Shadow packages' results are for `rules replay`, as the API keeps them from
            # callers; the line is the deciding package's result.
            lines.append(orjson.dumps(_result_line(result, named)))
        if len(lines) == _LINES_PER_WRITE:
            output.write(b"\n".join(lines) + b"\n")
            lines.clear()
    if lines:
        output.write(b"\n".join(lines) + b"\n")
    output.flush()
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
    extension.screenings().upgrade_database(revision)
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
    deleted = extension.screenings().purge(cutoff, actor="cli")
    click.echo(
        f"deleted {deleted} screening{'s' if deleted != 1 else ''} created before "
        f"{cutoff.isoformat(timespec='seconds')}"
    )


webhooks_cli = AppGroup("webhooks", help="Deliver webhook events and look after deliveries.")


@webhooks_cli.command("run")
@click.option(
    "--threads",
    default=4,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Deliveries sent at the same time by this worker.",
)
@click.option(
    "--lease-seconds",
    default=DEFAULT_LEASE_SECONDS,
    show_default=True,
    type=click.IntRange(MIN_LEASE_SECONDS, 600),
    help="How long a claimed delivery stays this worker's before another may take it.",
)
@click.option(
    "--scan-seconds",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    help="How often to look for urgent screenings whose review became overdue.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve this worker's Prometheus metrics on this port.",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for the metrics."
)
def run_webhooks_command(
    threads: int,
    lease_seconds: int,
    scan_seconds: float,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Send pending webhook events until stopped (SIGTERM or Ctrl-C).

    Several workers, on any number of hosts, may run at once on the same database.
    """
    service = extension.notifications()
    if metrics_port is not None:
        start_http_server(metrics_port, addr=metrics_host)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        stop.set()

    # A stopping worker finishes the attempts it has started and gives back the rest.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if not service.endpoints:
        # Not an error, and no reason to exit: a supervisor (compose's restart policy) would
        # start it again and again. With no endpoint no event is written; wait to be stopped.
        click.echo(
            "SCREENING_WEBHOOKS names no endpoint: nothing to deliver; waiting until stopped",
            err=True,
        )
        stop.wait()
        return
    click.echo(
        f"delivering to {', '.join(e.name for e in service.endpoints)} "
        f"with {threads} thread{'s' if threads != 1 else ''}"
    )
    if not service.deliverer(lease_seconds).run(stop, threads=threads, scan_seconds=scan_seconds):
        raise click.ClickException("a sender failed (see the log); start the worker again")


def _moment(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


@webhooks_cli.command("list")
@click.option("--failed", is_flag=True, help="Only deliveries given up after their retries.")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 10000), help="At most."
)
def list_webhooks_command(failed: bool, limit: int) -> None:
    """Show deliveries, newest first: id, status, attempts, event, endpoint, times, result."""
    rows = extension.notifications().deliveries(failed_only=failed, limit=limit)
    click.echo(
        f"{'id':>6}  {'status':<9} {'tries':>5}  {'event':<24} {'endpoint':<16} "
        f"{'screening':<32}  {'created':<20}  {'next / delivered':<20}  last result"
    )
    for row in rows:
        when = row.delivered_at if row.status == "delivered" else row.next_attempt_at
        if row.status == "failed":
            when = None
        click.echo(
            f"{row.id:>6}  {row.status:<9} {row.attempts:>5}  {row.event_type:<24} "
            f"{row.endpoint:<16} {row.screening_id:<32}  {_moment(row.created_at):<20}  "
            f"{_moment(when):<20}  {row.last_result or '-'}"
        )
    if not rows:
        click.echo("no failed deliveries" if failed else "no deliveries")


@webhooks_cli.command("retry")
@click.argument("delivery_id", type=click.IntRange(min=1))
def retry_webhook_command(delivery_id: int) -> None:
    """Send failed delivery DELIVERY_ID again, on a fresh retry schedule."""
    outcome = extension.notifications().retry(delivery_id)
    if outcome == "missing":
        raise click.ClickException(f"there is no delivery {delivery_id}")
    if outcome == "not_failed":
        raise click.ClickException(
            f"delivery {delivery_id} has not failed: only failed deliveries can be retried"
        )
    click.echo(f"delivery {delivery_id} is due again; a running worker sends it")
