"""The ``flask --app screening rules`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from flask.testing import FlaskCliRunner

from screening import PROJECT_ROOT
from screening.rules.rulebook import load_rules
from tests.support.app import RULES_ROOT


def test_check_reports_what_it_loaded(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["rules", "check"])
    assert result.exit_code == 0, result.output
    assert "lumbar-rfa-screening 1.1.0 (27 items)" in result.output
    assert "lumbar-rfa 1.1.0 (24 rules)" in result.output


def test_test_runs_the_cases_with_coverage(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["rules", "test"])
    assert result.exit_code == 0, result.output
    assert "0 failed; 24/24 rules covered both ways" in result.output
    assert "possible_infection" in result.output


def test_evaluate_one_object(runner: FlaskCliRunner, valid_answers: dict[str, Any]) -> None:
    valid_answers["rf_fever"] = True
    result = runner.invoke(args=["rules", "evaluate", "-"], input=json.dumps(valid_answers))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert data["outcome"] == "urgent_care"
    assert data["decided_by"] == "possible_infection"
    assert data["matched_rules"] == ["possible_infection", "meets_discussion_criteria"]


def test_evaluate_an_array_prints_a_line_each_and_fails_on_an_invalid_one(
    runner: FlaskCliRunner, valid_answers: dict[str, Any], tmp_path: Path
) -> None:
    invalid = dict(valid_answers, age_years="forty", pain_intensity=None)
    path = tmp_path / "answers.json"
    path.write_text(json.dumps([valid_answers, invalid, valid_answers]), encoding="utf-8")
    result = runner.invoke(args=["rules", "evaluate", str(path)])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line.get("outcome") for line in lines] == [
        "discuss_with_specialist",
        None,
        "discuss_with_specialist",
    ]
    assert set(lines[1]["errors"]) == {"age_years", "pain_intensity"}
    assert "forty" not in result.output


def test_evaluate_applies_the_package_named_as_the_api_would(
    runner: FlaskCliRunner, valid_answers: dict[str, Any]
) -> None:
    def evaluate(*options: str, answers: dict[str, Any] = valid_answers) -> dict[str, Any]:
        result = runner.invoke(args=["rules", "evaluate", *options, "-"], input=json.dumps(answers))
        assert result.exit_code == 0, result.output
        line: dict[str, Any] = json.loads(result.output)
        return line

    assert evaluate()["ruleset"]["id"] == "lumbar-rfa"
    assert evaluate()["ruleset"]["version"] == "1.2.0"
    # An id alone is its newest active version, for the newest questionnaire it serves.
    cms = evaluate("--ruleset", "lumbar-rfa-cms")["ruleset"]
    assert (cms["id"], cms["version"]) == ("lumbar-rfa-cms", "1.1.0")
    # An earlier questionnaire: its default package, and answers checked against it.
    shipped = load_rules(RULES_ROOT)
    for version, ruleset, decided_by in [
        ("1.0.0", None, ("lumbar-rfa", "1.0.1")),
        ("1.1.0", None, ("lumbar-rfa", "1.1.1")),
        ("1.1.0", "lumbar-rfa-cms:1.0.1", ("lumbar-rfa-cms", "1.0.1")),
    ]:
        items = shipped.for_questionnaire(version).questionnaire.by_link_id
        answers = {k: v for k, v in valid_answers.items() if k in items}
        options = ["--questionnaire", version] + (["--ruleset", ruleset] if ruleset else [])
        result = evaluate(*options, answers=answers)["ruleset"]
        assert (result["id"], result["version"]) == decided_by


def test_evaluate_refuses_a_package_the_api_would_refuse(
    runner: FlaskCliRunner, valid_answers: dict[str, Any]
) -> None:
    for options, message in [
        (["--ruleset", "nope"], "There is no ruleset nope."),
        (["--ruleset", "lumbar-rfa:1.1.0"], "is retired"),
        (["--questionnaire", "9.9.9"], "version 9.9.9 is not served"),
        (["--questionnaire", "1.0.0", "--ruleset", "lumbar-rfa:1.2.0"], "not lumbar-rfa-screening"),
    ]:
        result = runner.invoke(
            args=["rules", "evaluate", *options, "-"], input=json.dumps(valid_answers)
        )
        assert result.exit_code == 2, result.output
        assert message in result.output
        hint = (
            "--questionnaire"
            if options[0] == "--questionnaire" and len(options) == 2
            else "--ruleset"
        )
        assert f"Invalid value for {hint}" in result.output


def test_evaluate_refuses_text_that_is_not_json(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["rules", "evaluate", "-"], input="{not json")
    assert result.exit_code == 1
    assert "not valid JSON" in result.output


def _flask(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    flask = Path(sys.executable).parent / "flask"
    return subprocess.run(
        [str(flask), "--app", "screening", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        cwd=PROJECT_ROOT,
        timeout=60,
        check=False,
    )


def test_real_command_line_evaluates(valid_answers: dict[str, Any]) -> None:
    done = _flask("rules", "evaluate", "-", stdin=json.dumps(valid_answers))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["decided_by"] == "meets_discussion_criteria"


def test_real_command_line_stops_on_broken_rules(rules_copy: Path) -> None:
    ruleset = rules_copy / "ruleset.yaml"
    ruleset.write_text(
        ruleset.read_text(encoding="utf-8").replace(
            "{item: age_years, less_than: 18}", "{item: age, less_than: 18}"
        ),
        encoding="utf-8",
    )
    done = _flask("rules", "check", env={"SCREENING_RULES_DIR": str(rules_copy)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ruleset.yaml: rule 'under_18': names unknown item 'age'" in done.stderr
