"""Rule cases: worked examples under ``rules/`` that the ruleset must reproduce.

Each case takes a named base set of answers, applies its changes (``null``
removes an answer) and states the result: the outcome, the deciding rule and
every matched rule; or, for an invalid set, the linkIds that must be reported.
A run also measures coverage: every rule needs a case where it matches and one
where it does not (a rule that always matches needs only the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Protocol

from screening.rules import conditions
from screening.rules.engine import evaluate
from screening.rules.loader import RulesError
from screening.rules.loader import check_schema
from screening.rules.loader import read_yaml
from screening.rules.questionnaire import Questionnaire
from screening.rules.ruleset import Ruleset


class Rules(Protocol):
    """What a run of the cases reads: one package (or a rulebook's default package)."""

    @property
    def questionnaire(self) -> Questionnaire: ...
    @property
    def ruleset(self) -> Ruleset: ...
    @property
    def cases_path(self) -> Path: ...
    @property
    def schema_dir(self) -> Path: ...


@dataclass(frozen=True, slots=True)
class Case:
    """One worked example."""

    name: str
    answers: dict[str, Any]
    expect: dict[str, Any]


@dataclass(slots=True)
class CaseReport:
    """What a run of the cases found."""

    failures: list[str] = field(default_factory=list)
    passed: int = 0
    matched: dict[str, int] = field(default_factory=dict)
    not_matched: dict[str, int] = field(default_factory=dict)
    uncovered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every case passed and every rule is covered both ways."""
        return not self.failures and not self.uncovered


def load_cases(rulebook: Rules) -> list[Case]:
    """Read and schema-check the cases file, resolving each case's answers."""
    path = rulebook.cases_path
    data, _ = read_yaml(path)
    problems = check_schema(path, data, rulebook.schema_dir, "cases.schema.json")
    if problems:
        raise RulesError(problems)
    cases = []
    for raw in data["cases"]:
        if raw["base"] not in data["bases"]:
            problems.append(f"{path}: case '{raw['name']}': unknown base '{raw['base']}'")
            continue
        merged = {**data["bases"][raw["base"]], **raw.get("answers", {})}
        answers = {key: value for key, value in merged.items() if value is not None}
        cases.append(Case(raw["name"], answers, raw["expect"]))
    names = [case.name for case in cases]
    problems.extend(
        f"{path}: case '{name}' is listed twice"
        for name in sorted(set(names))
        if names.count(name) > 1
    )
    if problems:
        raise RulesError(problems)
    return cases


def _check_case(case: Case, rulebook: Rules, report: CaseReport) -> list[str]:
    """Run one case, record coverage, and return how it differs from its expectation."""
    answers, errors = rulebook.questionnaire.validate(case.answers)
    if "errors" in case.expect:
        expected_errors = sorted(case.expect["errors"])
        if sorted(errors) != expected_errors:
            return [f"errors on {sorted(errors)}, expected {expected_errors}"]
        return []
    if errors:
        return [f"answers are invalid: {errors}"]
    result = evaluate(answers, rulebook.ruleset)
    for entry in result["trace"]:
        counts = report.matched if entry["matched"] else report.not_matched
        counts[entry["rule"]] = counts.get(entry["rule"], 0) + 1
    return [
        f"{key} is {result[key]!r}, expected {case.expect[key]!r}"
        for key in ("outcome", "decided_by", "matched_rules")
        if result[key] != case.expect[key]
    ]


def run_cases(rulebook: Rules) -> CaseReport:
    """Run every case and measure rule coverage."""
    report = CaseReport()
    for case in load_cases(rulebook):
        differences = _check_case(case, rulebook, report)
        if differences:
            report.failures.extend(f"case '{case.name}': {d}" for d in differences)
        else:
            report.passed += 1
    for rule in rulebook.ruleset.rules:
        if not report.matched.get(rule.id):
            report.uncovered.append(f"rule '{rule.id}' has no case where it matches")
        always = isinstance(rule.condition, conditions.Always)
        if not always and not report.not_matched.get(rule.id):
            report.uncovered.append(f"rule '{rule.id}' has no case where it does not match")
    return report
