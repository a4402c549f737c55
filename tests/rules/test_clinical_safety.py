"""clinical-safety-v1.md on every package in use: its cases, generated answers, and the
defects of issue 22, each reproduced on the package it was found in and absent from
every package that replaced it."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.results import EngineResult
from screening.rules.rulebook import Package
from screening.rules.rulebook import load_rules
from tests.support.answers import valid_answers
from tests.support.app import RULES_ROOT
from tests.support.app import case_bases
from tests.support.clinical_texts import documented
from tests.support.examples import examples
from tests.support.safety import problems
from tests.support.safety import spanish_problems
from tests.support.safety_oracle import PACKAGES as ORACLE_PACKAGES
from tests.support.safety_oracle import oracle

RULEBOOK = load_rules(RULES_ROOT)
IN_USE = documented()
#: What each retired package was replaced by (clinical-safety-v1.md, "Packages").
REPLACED = {
    ("lumbar-rfa", "1.0.0"): ("lumbar-rfa", "1.0.1"),
    ("lumbar-rfa", "1.1.0"): ("lumbar-rfa", "1.1.1"),
    ("lumbar-rfa-cms", "1.0.0"): ("lumbar-rfa-cms", "1.0.1"),
}


def package(ruleset_id: str, version: str) -> Package:
    found = RULEBOOK.package(ruleset_id, version)
    assert found is not None, (ruleset_id, version)
    return found


def base(pkg: Package) -> dict[str, Any]:
    """The package's own no_findings answers."""
    return copy.deepcopy(case_bases(pkg.cases_path)["no_findings"])


def result_for(pkg: Package, changes: dict[str, Any]) -> tuple[dict[str, Any], EngineResult]:
    answers = {k: v for k, v in {**base(pkg), **changes}.items() if v is not None}
    answers = {k: v for k, v in answers.items() if k in pkg.questionnaire.by_link_id}
    clean, errors = pkg.questionnaire.validate(answers)
    assert errors == {}, errors
    return clean, evaluate(clean, pkg.ruleset)


def test_every_package_in_use_is_one_the_safety_update_released() -> None:
    assert {(p.id, p.version) for p in IN_USE} == set(ORACLE_PACKAGES)


CASES = [
    pytest.param(pkg, case, id=f"{pkg.describe()}: {case.name}")
    for pkg in IN_USE
    for case in load_cases(pkg)
    if "errors" not in case.expect
]


@pytest.mark.parametrize(("pkg", "case"), CASES)
def test_every_case_keeps_the_safety_rules(pkg: Package, case: Any) -> None:
    clean, errors = pkg.questionnaire.validate(case.answers)
    assert errors == {}
    result = evaluate(clean, pkg.ruleset)
    assert problems(pkg, clean, result) == []
    assert spanish_problems(pkg, result) == []


@pytest.mark.parametrize("pkg", IN_USE, ids=[p.describe() for p in IN_USE])
def test_any_answers_give_what_the_contract_says(pkg: Package) -> None:
    @settings(max_examples=examples(300), deadline=None)
    # Mostly no to each warning sign: one on every answer would hide everything after it.
    @given(valid_answers(pkg.questionnaire, st.sampled_from([False, False, False, True])))
    def check(answers: dict[str, Any]) -> None:
        clean, errors = pkg.questionnaire.validate(answers)
        assert errors == {}
        result = evaluate(clean, pkg.ruleset)
        # The rules data agrees with the contract written out by hand.
        assert (result["outcome"], result["decided_by"], result["matched_rules"]) == oracle(
            pkg.id, pkg.version, clean
        )
        assert problems(pkg, clean, result) == []
        assert spanish_problems(pkg, result) == []

    check()


# --- The defects found on realistic patients (issue 22) ------------------------------


def _patient_text(result: dict[str, Any]) -> str:
    patient = result["summary"]["patient"]
    return " ".join([*patient["body"], *patient["notes"]])


def _clinician_notes(result: dict[str, Any]) -> str:
    return " ".join(note["text"] for note in result["summary"]["clinician"]["notes"])


def _findings(result: dict[str, Any]) -> str:
    return " ".join(finding["text"] for finding in result["summary"]["clinician"]["findings"])


TWO_90_BLOCKS = {
    "medial_branch_block": "yes_twice_or_more",
    "block_relief_percent": 90,
    "second_block_relief_percent": 90,
}
#: (defect, retired package, answers, whether the result shows the defect)
DEFECTS: list[tuple[str, tuple[str, str], dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    (
        "a pregnant woman sent for help after a crash is told X-ray procedures wait",
        ("lumbar-rfa", "1.1.0"),
        {"pregnant": "yes", "rf_major_trauma": True, "pain_duration": "less_than_6_weeks"},
        lambda r: r["outcome"] == "urgent_care" and "X-rays" in _patient_text(r),
    ),
    (
        "a pregnant woman with cauda equina signs is told X-ray procedures wait",
        ("lumbar-rfa", "1.0.0"),
        {"pregnant": "yes", "rf_saddle_numbness": True},
        lambda r: r["outcome"] == "urgent_care" and "X-rays" in _patient_text(r),
    ),
    (
        "a crash years ago sends twelve months of pain to the emergency room",
        ("lumbar-rfa", "1.1.0"),
        {"rf_major_trauma": True, "pain_duration": "more_than_12_months"},
        lambda r: r["outcome"] == "urgent_care",
    ),
    (
        "an earlier RF treatment that helped 3 months reads as 'no exclusion' for a first one",
        ("lumbar-rfa", "1.1.0"),
        {"previous_rfa": "yes", "previous_rfa_relief_months": 3},
        lambda r: "No exclusion" in _findings(r),
    ),
    (
        "the CMS profile calls two 90% blocks after an earlier treatment the first-RF criterion",
        ("lumbar-rfa-cms", "1.0.0"),
        {"previous_rfa": "yes", "previous_rfa_relief_months": 3, **TWO_90_BLOCKS},
        lambda r: "for a first RF denervation" in _findings(r) and "meets" in _findings(r).lower(),
    ),
    (
        "two blocks at 90% and 20% read as positive",
        ("lumbar-rfa", "1.1.0"),
        {**TWO_90_BLOCKS, "second_block_relief_percent": 20},
        lambda r: r["decided_by"] == "positive_block",
    ),
    (
        "pain in some other place is invited to discuss a low back procedure",
        ("lumbar-rfa", "1.1.0"),
        {"pain_location": "other"},
        lambda r: r["outcome"] == "discuss_with_specialist",
    ),
    (
        "shots in the back alone count as conservative care tried",
        ("lumbar-rfa", "1.1.0"),
        {"treatments_tried": ["spinal_injections"]},
        lambda r: r["outcome"] == "discuss_with_specialist",
    ),
    (
        "a card invites RF denervation for a block with under 50% relief",
        ("lumbar-rfa", "1.1.0"),
        {"medial_branch_block": "yes_once", "block_relief_percent": 30},
        lambda r: "RF denervation" in r["summary"]["clinician"]["card_summary"],
    ),
    (
        "an urgent result carries clinician notes about imaging and the appointment",
        ("lumbar-rfa", "1.1.0"),
        {"rf_fever": True, "imaging_done": ["none"]},
        lambda r: r["outcome"] == "urgent_care" and "imaging" in _clinician_notes(r),
    ),
    (
        "an urgent result tells clinicians to bring MRI reports to the appointment",
        ("lumbar-rfa", "1.1.0"),
        {"rf_fever": True, "imaging_done": ["mri"]},
        lambda r: r["outcome"] == "urgent_care" and "appointment" in _clinician_notes(r),
    ),
    (
        "79% relief is told it did not ease the pain most of the way",
        ("lumbar-rfa-cms", "1.0.0"),
        {"medial_branch_block": "yes_once", "block_relief_percent": 79},
        lambda r: "most of the way" in _patient_text(r),
    ),
]


def _replacements(retired: tuple[str, str]) -> list[Package]:
    """The package that replaced a retired one, and those on the newer questionnaire."""
    ruleset_id, _ = retired
    return [package(*REPLACED[retired])] + [
        p for p in IN_USE if p.id == ruleset_id and p.questionnaire.version == "1.2.0"
    ]


@pytest.mark.parametrize(
    ("defect", "retired", "changes", "shows"), DEFECTS, ids=[d[0] for d in DEFECTS]
)
def test_each_defect_is_gone_from_every_package_that_replaced_its_package(
    defect: str,
    retired: tuple[str, str],
    changes: dict[str, Any],
    shows: Callable[[EngineResult], bool],
) -> None:
    old = package(*retired)
    assert old.status == "retired"
    _, result = result_for(old, changes)
    assert shows(result), f"the check no longer finds the defect on {old.describe()}"
    for new in _replacements(retired):
        # On questionnaire 1.2.0 a recent crash needs its date, an earlier treatment its relief.
        extra = {"major_trauma_when": "in_last_6_weeks", "previous_rfa_relief_percent": 80}
        if changes.get("pain_duration") == "more_than_12_months":
            extra["major_trauma_when"] = "longer_ago"
        given_changes = {
            **changes,
            **{k: v for k, v in extra.items() if k in new.questionnaire.by_link_id},
        }
        if "rf_major_trauma" not in changes:
            given_changes.pop("major_trauma_when", None)
        if changes.get("previous_rfa") != "yes":
            given_changes.pop("previous_rfa_relief_percent", None)
        clean, result = result_for(new, given_changes)
        assert not shows(result), new.describe()
        assert problems(new, clean, result) == []


SPANISH_DEFECTS = [
    ("le bajó el dolor a la mitad o más", ("lumbar-rfa", "1.1.0"), "positive_block"),
    ("Casi todas las personas", ("lumbar-rfa", "1.1.0"), "conservative_care_too_short"),
]


def test_a_spanish_urgent_result_promises_no_review_to_wait_for() -> None:
    """The English disclaimer dropped "A doctor or nurse will look at your answers" (someone
    sent for help today could wait for it); the Spanish must say no more."""
    old = package("lumbar-rfa", "1.1.0")
    _, result = result_for(old, {"rf_fever": True})
    assert any("Spanish suggests later care" in p for p in spanish_problems(old, result))
    for new in IN_USE:
        _, result = result_for(new, {"rf_fever": True})
        assert spanish_problems(new, result) == [], new.describe()


@pytest.mark.parametrize(("wording", "retired", "rule_id"), SPANISH_DEFECTS)
def test_spanish_that_changed_meaning_is_gone(
    wording: str, retired: tuple[str, str], rule_id: str
) -> None:
    old = package(*retired)
    assert any(wording in s for s in old.catalogs["es"].texts.bodies[rule_id])
    for new in IN_USE:
        spanish = new.catalogs["es"].texts
        every = [s for body in spanish.bodies.values() for s in body] + list(spanish.notes.values())
        assert not any(re.search(wording, s, re.IGNORECASE) for s in every), new.describe()
