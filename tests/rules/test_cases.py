"""The rule cases under rules/ all pass, and every rule is covered both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from screening.rules.cases import load_cases
from screening.rules.cases import run_cases
from screening.rules.loader import RulesError
from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import load_rules


def test_every_case_passes_and_every_rule_is_covered(rulebook: Rulebook) -> None:
    report = run_cases(rulebook)
    assert report.failures == []
    assert report.uncovered == []
    assert report.passed == len(load_cases(rulebook)) >= 50


@pytest.mark.parametrize(
    ("link_id", "below", "at"),
    [
        ("age_years", 17, 18),
        ("pain_intensity", 4, 5),
        ("block_relief_percent", 49, 50),
        ("previous_rfa_relief_months", 5, 6),
    ],
)
def test_spec_boundaries_have_cases_on_both_sides(
    rulebook: Rulebook, link_id: str, below: int, at: int
) -> None:
    values = {
        case.answers.get(link_id) for case in load_cases(rulebook) if "errors" not in case.expect
    }
    assert {below, at} <= values


def test_pain_duration_boundary_cases(rulebook: Rulebook) -> None:
    values = {case.answers["pain_duration"] for case in load_cases(rulebook)}
    assert {"6_to_12_weeks", "3_to_6_months", "6_to_12_months"} <= values


def _edit_cases(rules_copy: Path, edit: object) -> Rulebook:
    path = rules_copy / "cases.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_rules(rules_copy)


def test_a_wrong_expectation_fails(rules_copy: Path) -> None:
    def edit(data: dict) -> None:  # type: ignore[type-arg]
        data["cases"][0]["expect"]["outcome"] = "urgent_care"

    report = run_cases(_edit_cases(rules_copy, edit))
    assert len(report.failures) == 1
    assert "outcome is 'discuss_with_specialist', expected 'urgent_care'" in report.failures[0]


def test_a_rule_without_a_matching_case_is_a_gap(rules_copy: Path) -> None:
    def edit(data: dict) -> None:  # type: ignore[type-arg]
        data["cases"] = [
            c for c in data["cases"] if c["expect"].get("decided_by") != "possible_infection"
        ]
        for case in data["cases"]:
            if case.get("answers", {}).get("rf_fever") is True:
                del case["answers"]["rf_fever"]
            if "possible_infection" in case["expect"].get("matched_rules", []):
                case["expect"]["matched_rules"].remove("possible_infection")

    report = run_cases(_edit_cases(rules_copy, edit))
    assert report.failures == []
    assert report.uncovered == ["rule 'possible_infection' has no case where it matches"]
    assert not report.ok


def test_a_malformed_cases_file_names_the_problem(rules_copy: Path) -> None:
    def edit(data: dict) -> None:  # type: ignore[type-arg]
        data["cases"][2]["base"] = "nobody"
        del data["cases"][3]["expect"]["decided_by"]

    with pytest.raises(RulesError) as caught:
        run_cases(_edit_cases(rules_copy, edit))
    assert "cases.yaml" in str(caught.value)
