"""Findings, card and patient notes state only what is true of the screening, in every package."""

from __future__ import annotations

from typing import Any

import pytest

from screening.rules import conditions
from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.results import EngineResult
from screening.rules.rulebook import Package
from screening.rules.rulebook import load_rules
from tests.support.app import RULES_ROOT

PACKAGES = load_rules(RULES_ROOT).sorted_packages()
# The fixed 1.0.0 package is released: its sha256 is on stored screenings, so its
# texts stay as they were; later packages say which outcomes each patient note fits.
RELEASED_BEFORE_NOTE_OUTCOMES = {("lumbar-rfa", "1.0.0")}


def _results(package: Package) -> list[tuple[str, EngineResult]]:
    results = []
    for case in load_cases(package):
        if "errors" in case.expect:
            continue
        answers, errors = package.questionnaire.validate(case.answers)
        assert not errors, case.name
        results.append((case.name, evaluate(answers, package.ruleset)))
    return results


CASES = [
    pytest.param(package, name, result, id=f"{package.describe()}: {name}")
    for package in PACKAGES
    for name, result in _results(package)
]


@pytest.mark.parametrize(("package", "name", "result"), CASES)
def test_no_finding_contradicts_the_deciding_rule(
    package: Package, name: str, result: dict[str, Any]
) -> None:
    rules = {rule.id: rule for rule in package.ruleset.rules}
    decided = rules[result["decided_by"]]
    clinician = result["summary"]["clinician"]
    findings = [finding["rule"] for finding in clinician["findings"]]
    assert findings[0] == decided.id
    for rule_id in findings[1:]:
        rule = rules[rule_id]
        # A rule that holds for everyone states "no exclusion found": true only when it decides.
        assert not isinstance(rule.condition, conditions.Always), (name, rule_id)
        assert rule.kind == "decision"
    indicator = package.ruleset.outcomes[result["outcome"]].indicator
    if indicator in ("critical", "warning"):
        for finding in clinician["findings"]:
            text = finding["text"].lower()
            assert "no exclusion" not in text and "no red flag" not in text, (name, finding)
    others = len(findings) - 1
    if others:
        assert f"(+{others} more finding" in clinician["card_summary"]
    else:
        assert "more finding" not in clinician["card_summary"]
    # matched_rules still lists every rule that held (rules-v1.md).
    assert set(findings) <= set(result["matched_rules"])
    cited = {s["id"] for s in clinician["sources"]}
    stated = clinician["findings"] + clinician["notes"]
    assert cited == {source for finding in stated for source in finding["sources"]}


@pytest.mark.parametrize(
    ("package", "name", "result"),
    [
        case
        for case in CASES
        if (case.values[0].id, case.values[0].version) not in RELEASED_BEFORE_NOTE_OUTCOMES  # type: ignore[union-attr]
    ],
)
def test_an_urgent_result_does_not_tell_what_to_bring_to_a_visit(
    package: Package, name: str, result: dict[str, Any]
) -> None:
    if package.ruleset.outcomes[result["outcome"]].indicator != "critical":
        return
    for note in result["summary"]["patient"]["notes"]:
        assert "visit" not in note.lower() and "bring" not in note.lower(), (name, note)


def test_an_urgent_case_with_imaging_carries_no_visit_note() -> None:
    package = next(p for p in PACKAGES if (p.id, p.version) == ("lumbar-rfa", "1.1.0"))
    case = next(c for c in load_cases(package) if c.expect.get("outcome") == "urgent_care")
    answers, _ = package.questionnaire.validate({**case.answers, "imaging_done": ["mri"]})
    result = evaluate(answers, package.ruleset)
    assert "imaging_on_record" in result["matched_rules"]
    assert [n["rule"] for n in result["summary"]["clinician"]["notes"]] == ["imaging_on_record"]
    assert not any("MRI" in note for note in result["summary"]["patient"]["notes"])
    spanish = package.catalogs["es"].patient_summary(
        result["summary"]["patient"], result["decided_by"], result["matched_rules"]
    )
    assert spanish["notes"] == []
