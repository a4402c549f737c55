"""The newcomer's path: the example bodies are a rule case; the commands of the README and of
the guides run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from screening import PROJECT_ROOT
from screening.fhir.forms import answers_from_questionnaire_response
from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from tests.support.app import RULES_DIR
from tests.support.app import TOKENS
from tests.support.server import gunicorn
from tests.support.server import service_environment

EXAMPLES = PROJECT_ROOT / "examples"
README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
#: The rule case the examples are: its answers are what the quick start sends.
EXAMPLE_BASE = "no_findings"


def _example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def _case_answers() -> dict[str, Any]:
    cases = yaml.safe_load((RULES_DIR / "cases.yaml").read_text(encoding="utf-8"))
    return dict(cases["bases"][EXAMPLE_BASE])


def _shell_blocks(document: Path, section: str) -> list[str]:
    """The ```sh blocks of one section of a Markdown file (from its heading to the next)."""
    text = document.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", body, flags=re.S)


# --- the examples are a rule case -------------------------------------------------------------


def test_the_answers_example_is_the_rule_case() -> None:
    assert _example("answers.json") == _case_answers()


def test_the_screening_example_carries_the_same_answers() -> None:
    body = _example("screening.json")
    assert body["answers"] == _case_answers()
    assert set(body) <= {"answers", "patient_ref", "questionnaire"}


def test_the_fhir_example_holds_the_same_answers(rulebook: Rulebook) -> None:
    resource = _example("questionnaire-response.json")
    answers, errors = answers_from_questionnaire_response(resource, rulebook.questionnaire)
    assert errors == {}
    assert answers == _case_answers()
    # And it is exactly what the service's own writer makes of them.
    assert resource == questionnaire_response_from_answers(answers, rulebook.questionnaire)


def test_the_example_answers_are_valid(rulebook: Rulebook) -> None:
    clean, errors = rulebook.questionnaire.validate(_example("answers.json"))
    assert errors == {}
    assert clean == _case_answers()


# --- the commands run as written ---------------------------------------------------------------

# Every curl in the README and the guides fails the run on an HTTP error, stays quiet about
# progress and ends its output with a line break (as a terminal shows it); nothing else is changed.
_PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --silent --show-error "$@" && echo; }
"""


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The service under gunicorn with the test keys, on a fresh database."""
    log = tmp_path / "gunicorn.log"
    with gunicorn(service_environment(database_url), log, workers=1, threads=2) as base:
        yield base


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(
        ["bash", "-c", _PRELUDE + script],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _run_tour(document: Path, section: str, service: str) -> list[str]:
    """Run the section's commands after its first block (which only says which tokens to
    export; the test exports its own); the lines they printed."""
    blocks = _shell_blocks(document, section)
    assert "export PORTAL=" in blocks[0]
    commands = "\n".join(blocks[1:])
    assert "examples/screening.json" in commands
    env = {"PORTAL": TOKENS["portal-a"], "CLINICIAN": TOKENS["dr-c"], "B": service}
    done = _run(commands, env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


@pytest.mark.deployment
def test_every_readme_quick_start_command_runs(service: str) -> None:
    lines = _run_tour(README, "Quick start", service)
    # The questionnaire, the evaluation, then the stored screening read back twice.
    questionnaire, evaluated, portal_view, clinician_view = (json.loads(line) for line in lines)
    assert questionnaire["version"] == "1.2.0"
    assert evaluated["outcome"] == portal_view["outcome"] == clinician_view["outcome"]
    # The portal reads the patient view; the clinician also the rules that decided it.
    assert "decided_by" not in portal_view
    assert clinician_view["decided_by"] == "meets_discussion_criteria"
    assert clinician_view["answers"] == _case_answers()


@pytest.mark.deployment
def test_every_portal_guide_command_runs(service: str) -> None:
    lines = _run_tour(DOCS / "portal.md", "API quick start", service)
    # The last command's answer: the screening, now reviewed with the example's note.
    last = json.loads(lines[-1])
    assert last["review"]["status"] == "reviewed"
    assert last["review"]["history"][-1]["note"] == _example("review.json")["note"]
    assert last["answers"] == _case_answers()


def test_the_rules_commands_run() -> None:
    (block,) = _shell_blocks(DOCS / "rules.md", "Working on the rules")
    flask = PROJECT_ROOT / ".venv" / "bin" / "flask"
    if not flask.exists():
        pytest.skip("the guide's commands use .venv/bin/flask, which `make install` creates")
    done = _run(block, {})
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(r["ruleset"]["id"], r["decided_by"]) for r in results] == [
        ("lumbar-rfa", "meets_discussion_criteria"),
        ("lumbar-rfa-cms", "no_functional_deficit"),
    ]
