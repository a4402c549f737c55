"""docs/clinical-safety/hazard-log.yaml: schema-valid, and every control it names exists."""

from __future__ import annotations

import ast
import json
from functools import cache
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from screening import PROJECT_ROOT
from screening.rules.cases import load_cases
from screening.rules.rulebook import load_rules
from tests.support.app import RULES_ROOT

FOLDER = PROJECT_ROOT / "docs" / "clinical-safety"
LOG = yaml.safe_load((FOLDER / "hazard-log.yaml").read_text(encoding="utf-8"))
SCHEMA = json.loads((FOLDER / "hazard-log.schema.json").read_text(encoding="utf-8"))
RULEBOOK = load_rules(RULES_ROOT)
#: clinical-safety-v1.md's hazards, in its order, as H1-H9: a word each must name.
REQUIRED = {
    "H1": "red flag missed",
    "H2": "urgent advice delayed by a note",
    "H3": "over-triage to emergency care",
    "H4": "repeat procedure judged as a first",
    "H5": "misread as a diagnosis",
    "H6": "promise of coverage",
    "H7": "translation that changes meaning",
    "H8": "wrong package's words",
    "H9": "stale screening never reviewed",
}


@cache
def _test_functions(path: str) -> frozenset[str]:
    tree = ast.parse((PROJECT_ROOT / path).read_text(encoding="utf-8"))
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))


def missing(control: dict[str, Any]) -> str | None:
    """Why a control names nothing that exists (or a retired package's rule), else None."""
    if "test" in control:
        path, _, name = control["test"].partition("::")
        if not (PROJECT_ROOT / path).is_file():
            return f"no test file {path}"
        return None if name in _test_functions(path) else f"no test {name} in {path}"
    ruleset_id, _, version = control["package"].partition(" ")
    package = RULEBOOK.package(ruleset_id, version)
    if package is None:
        return f"no package {control['package']}"
    if package.status == "retired":
        return f"{control['package']} is retired"
    if "rule" in control:
        if control["rule"] not in {rule.id for rule in package.ruleset.rules}:
            return f"no rule {control['rule']} in {control['package']}"
        return None
    if control["case"] not in {case.name for case in load_cases(package)}:
        return f"no case {control['case']!r} in {control['package']}"
    return None


def test_the_log_keeps_its_schema() -> None:
    validator = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [error.message for error in validator.iter_errors(LOG)] == []


def test_the_log_holds_every_hazard_the_contract_names() -> None:
    by_id = {hazard["id"]: hazard for hazard in LOG["hazards"]}
    assert len(by_id) == len(LOG["hazards"])
    for hazard_id, words in REQUIRED.items():
        assert words in by_id[hazard_id]["hazard"].lower(), hazard_id


CONTROLS = [
    pytest.param(control, id=f"{hazard['id']}: {json.dumps(control)}")
    for hazard in LOG["hazards"]
    for control in hazard["controls"]
]


@pytest.mark.parametrize("control", CONTROLS)
def test_every_control_exists(control: dict[str, Any]) -> None:
    assert missing(control) is None


def test_every_hazard_has_a_rule_or_test_control_and_a_lower_or_equal_residual_risk() -> None:
    for hazard in LOG["hazards"]:
        assert any("rule" in c or "test" in c for c in hazard["controls"]), hazard["id"]
        before = hazard["severity"] * hazard["likelihood"]
        residual = hazard["residual_risk"]
        assert residual["severity"] * residual["likelihood"] <= before, hazard["id"]
        # What is left must be acceptable, at most with review (scales.risk).
        assert residual["severity"] * residual["likelihood"] <= 9, hazard["id"]


@pytest.mark.parametrize(
    ("control", "reason"),
    [
        ({"test": "tests/rules/test_vignettes.py::test_no_such_thing"}, "no test"),
        ({"test": "tests/no_such_file.py::test_a"}, "no test file"),
        ({"rule": "no_such_rule", "package": "lumbar-rfa 1.2.0"}, "no rule"),
        ({"rule": "major_trauma", "package": "lumbar-rfa 1.1.0"}, "retired"),
        ({"rule": "major_trauma", "package": "lumbar-rfa 9.9.9"}, "no package"),
        ({"case": "no such case", "package": "lumbar-rfa 1.2.0"}, "no case"),
    ],
)
def test_a_control_that_names_nothing_is_caught(control: dict[str, Any], reason: str) -> None:
    found = missing(control)
    assert found is not None and reason in found
