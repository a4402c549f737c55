"""The newcomer's path: the example bodies are a rule case; the README's commands run as written."""

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
#: The rule case the examples are: its answers are what the quick start sends.
EXAMPLE_BASE = "no_findings"


def _example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def _case_answers() -> dict[str, Any]:
    cases = yaml.safe_load((RULES_DIR / "cases.yaml").read_text(encoding="utf-8"))
    return dict(cases["bases"][EXAMPLE_BASE])


def _shell_blocks(section: str) -> list[str]:
    """The ```sh blocks of one README section (from its heading to the next)."""
    text = README.read_text(encoding="utf-8")
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


# --- the README's commands run as written ------------------------------------------------------

# Every curl in the README fails the run on an HTTP error, stays quiet about progress and
# ends its output with a line break (as a terminal shows it); nothing else is changed.
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


@pytest.mark.deployment
def test_every_quick_start_command_runs(service: str) -> None:
    blocks = _shell_blocks("API quick start")
    # The first block only says which tokens to export; the test exports its own.
    assert "export PORTAL=" in blocks[0]
    commands = "\n".join(blocks[1:])
    assert "examples/screening.json" in commands
    env = {"PORTAL": TOKENS["portal-a"], "CLINICIAN": TOKENS["dr-c"], "B": service}
    done = _run(commands, env)
    assert done.returncode == 0, done.stderr
    # The last command's answer: the screening, now reviewed with the example's note.
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["review"]["status"] == "reviewed"
    assert last["review"]["history"][-1]["note"] == _example("review.json")["note"]
    assert last["answers"] == _case_answers()


def test_the_rules_commands_run() -> None:
    (block,) = _shell_blocks("Working on the rules")
    flask = PROJECT_ROOT / ".venv" / "bin" / "flask"
    if not flask.exists():
        pytest.skip("the README's commands use .venv/bin/flask, which `make install` creates")
    done = _run(block, {})
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(r["ruleset"]["id"], r["decided_by"]) for r in results] == [
        ("lumbar-rfa", "meets_discussion_criteria"),
        ("lumbar-rfa-cms", "no_functional_deficit"),
    ]
