"""The engine: first-match outcome, every matched rule, trace, summaries; pure."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import settings

from screening import PROJECT_ROOT
from screening.rules.cases import load_cases
from screening.rules.engine import decide
from screening.rules.engine import evaluate
from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import load_package
from screening.rules.rulebook import load_rules
from tests.support.answers import valid_answers
from tests.support.app import RULES_DIR
from tests.support.app import RULES_ROOT
from tests.support.app import base_answers
from tests.support.examples import examples

RULEBOOK = load_rules(RULES_DIR)
#: lumbar-rfa 1.1.0 holds rules-v1.md exactly; it is retired (clinical-safety-v1.md changed
#: what later packages decide: tests/rules/test_clinical_safety.py holds them to their own
#: oracle) and stays loaded, so its screenings read as they were decided.
RULES_V1 = load_package(RULES_ROOT / "lumbar-rfa" / "1.1.0")


def spec_oracle(a: dict[str, Any]) -> tuple[str, str, list[str]]:
    """rules-v1.md written out by hand, independent of the rules data and engine."""
    block = a["medial_branch_block"] in ("yes_once", "yes_twice_or_more")
    decisions = [
        (
            "cauda_equina_signs",
            a["rf_bladder_or_bowel_change"] or a["rf_saddle_numbness"],
            "urgent_care",
        ),
        ("worsening_leg_weakness", a["rf_leg_weakness_worsening"], "urgent_care"),
        ("possible_infection", a["rf_fever"], "urgent_care"),
        ("major_trauma", a["rf_major_trauma"], "urgent_care"),
        (
            "cancer_warning_signs",
            a["rf_cancer_history"] or a["rf_unexplained_weight_loss"],
            "see_primary_care",
        ),
        (
            "fracture_or_infection_risk",
            a["rf_steroid_or_osteoporosis"] or a["rf_immunosuppressed_or_iv_drug_use"],
            "see_primary_care",
        ),
        ("under_18", a["age_years"] < 18, "see_primary_care"),
        (
            "leg_dominant_symptoms",
            a["pain_location"] == "mainly_leg_below_knee"
            or bool(
                {"pain_below_knee", "numbness_or_tingling", "weakness"} & set(a["leg_symptoms"])
            ),
            "see_primary_care",
        ),
        ("pain_duration_unknown", a["pain_duration"] == "unsure", "see_primary_care"),
        (
            "pain_under_3_months",
            a["pain_duration"] in ("less_than_6_weeks", "6_to_12_weeks"),
            "continue_conservative_care",
        ),
        ("no_conservative_care_yet", "none" in a["treatments_tried"], "continue_conservative_care"),
        (
            "conservative_care_too_short",
            a.get("treatment_duration") == "less_than_6_weeks",
            "continue_conservative_care",
        ),
        (
            "conservative_care_helping",
            a.get("treatment_effect") in ("helped_a_lot", "still_ongoing"),
            "continue_conservative_care",
        ),
        ("pain_below_threshold", a["pain_intensity"] < 5, "continue_conservative_care"),
        (
            "repeat_rfa_candidate",
            a["previous_rfa"] == "yes" and a["previous_rfa_relief_months"] >= 6,
            "discuss_with_specialist",
        ),
        ("positive_block", block and a["block_relief_percent"] >= 50, "discuss_with_specialist"),
        ("negative_block", block and a["block_relief_percent"] < 50, "discuss_with_specialist"),
        ("meets_discussion_criteria", True, "discuss_with_specialist"),
    ]
    notes = [
        ("takes_blood_thinners", a["blood_thinners"]),
        ("implanted_device", a["pacemaker_or_implanted_device"]),
        ("pregnancy", a["pregnant"] == "yes"),
        ("imaging_on_record", bool({"mri", "ct"} & set(a["imaging_done"]))),
        ("no_imaging_needed_yet", "none" in a["imaging_done"]),
        ("functional_impact", a["pain_interference"] >= 5),
    ]
    matched = [rule for rule, held, _ in decisions if held] + [rule for rule, held in notes if held]
    rule, _, outcome = next(d for d in decisions if d[1])
    return outcome, rule, matched


@settings(max_examples=examples(400), deadline=None)
@given(valid_answers(RULES_V1.questionnaire))
def test_any_valid_answers_give_what_rules_v1_specifies(answers: dict[str, Any]) -> None:
    clean, errors = RULES_V1.questionnaire.validate(answers)
    assert errors == {}
    result = evaluate(clean, RULES_V1.ruleset)
    outcome, decided_by, matched = spec_oracle(clean)
    assert (result["outcome"], result["decided_by"], result["matched_rules"]) == (
        outcome,
        decided_by,
        matched,
    )
    clinician = result["summary"]["clinician"]
    assert len(clinician["card_summary"]) <= 140
    assert [f["rule"] for f in clinician["findings"]][0] == decided_by
    assert decide(clean, RULES_V1.ruleset).id == decided_by


def test_decide_gives_the_rule_evaluate_decides_by_on_every_case_of_every_package() -> None:
    checked = 0
    for package in load_rules(RULES_ROOT).sorted_packages():
        for case in load_cases(package):
            answers, errors = package.questionnaire.validate(case.answers)
            if errors:
                continue
            result = evaluate(answers, package.ruleset)
            rule = decide(answers, package.ruleset)
            assert (rule.kind, rule.outcome, rule.id) == (
                "decision",
                result["outcome"],
                result["decided_by"],
            )
            checked += 1
    assert checked > 150


def test_result_shape(rulebook: Rulebook, valid_answers: dict[str, Any]) -> None:
    valid_answers.update(
        medial_branch_block="yes_once",
        block_relief_percent=50,
        blood_thinners=True,
        imaging_done=["mri"],
    )
    result = evaluate(valid_answers, rulebook.ruleset)
    assert result["outcome"] == "discuss_with_specialist"
    assert result["decided_by"] == "positive_block"
    assert result["matched_rules"] == [
        "positive_block",
        "meets_discussion_criteria",
        "takes_blood_thinners",
        "imaging_on_record",
    ]
    assert result["ruleset"] == {
        "id": "lumbar-rfa",
        "version": "1.2.0",
        "sha256": rulebook.ruleset.sha256,
    }
    patient = result["summary"]["patient"]
    rule = next(r for r in rulebook.ruleset.rules if r.id == "positive_block")
    assert patient["headline"] == rulebook.ruleset.outcomes["discuss_with_specialist"].headline
    assert patient["body"] == list(rule.patient)
    assert len(patient["notes"]) == 2  # blood thinners, imaging; both marked for patients
    assert patient["disclaimer"] == rulebook.ruleset.disclaimer
    clinician = result["summary"]["clinician"]
    assert clinician["card_summary"].startswith("Discuss with a spine specialist: ")
    # The fallback matched too, but did not decide: it is no finding of this screening.
    assert "more finding" not in clinician["card_summary"]
    assert [f["rule"] for f in clinician["findings"]] == ["positive_block"]
    assert clinician["findings"][0]["sources"] == ["S1", "S8", "S2"]
    # The clinician text names the answers it rests on ({linkId} in the rules data).
    assert "first 50, second not asked" in clinician["findings"][0]["text"]
    assert [n["rule"] for n in clinician["notes"]] == ["takes_blood_thinners", "imaging_on_record"]
    assert {s["id"] for s in clinician["sources"]} == {"S1", "S2", "S8", "S10"}
    key = {k["linkId"]: k for k in clinician["key_answers"]}
    assert key["block_relief_percent"] == {
        "linkId": "block_relief_percent",
        "value": 50,
        "display": "50",
    }
    assert key["treatments_tried"]["display"] == "Physical therapy or exercise; Pain medicine"
    assert key["previous_rfa_relief_months"] == {
        "linkId": "previous_rfa_relief_months",
        "value": None,
        "display": "Not asked",
    }


def test_trace_covers_every_rule_in_order(
    rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    valid_answers["age_years"] = 17
    result = evaluate(valid_answers, rulebook.ruleset)
    assert [t["rule"] for t in result["trace"]] == [r.id for r in rulebook.ruleset.rules]
    under_18 = next(t for t in result["trace"] if t["rule"] == "under_18")
    assert under_18 == {
        "rule": "under_18",
        "matched": True,
        "conditions": [
            {
                "linkId": "age_years",
                "operator": "less_than",
                "expected": 18,
                "actual": 17,
                "held": True,
            }
        ],
    }
    repeat = next(t for t in result["trace"] if t["rule"] == "repeat_rfa_candidate")
    assert repeat["matched"] is False
    assert repeat["conditions"][1]["actual"] is None  # not asked: the comparison does not hold
    assert [t["matched"] for t in result["trace"]].count(True) == len(result["matched_rules"])


def test_evaluation_does_not_change_its_inputs(
    rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    before = dict(valid_answers)
    first = evaluate(valid_answers, rulebook.ruleset)
    assert valid_answers == before
    assert evaluate(valid_answers, rulebook.ruleset) == first


def test_engine_modules_import_nothing_from_flask_or_the_database() -> None:
    pure = [
        "engine",
        "conditions",
        "summaries",
        "results",
        "ruleset",
        "questionnaire",
        "loader",
        "cases",
    ]
    for name in pure:
        tree = ast.parse(
            Path(PROJECT_ROOT / "screening" / "rules" / f"{name}.py").read_text(encoding="utf-8")
        )
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"flask", "werkzeug", "sqlalchemy", "alembic", "psycopg"}, name
        screening_imports = {
            f"{node.module}.{alias.name}" if node.module == "screening.rules" else node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("screening")
            for alias in node.names
        }
        assert screening_imports <= {f"screening.rules.{n}" for n in pure}, name


def test_a_note_holds_only_with_the_outcomes_it_names(rulebook: Rulebook) -> None:
    """with_outcomes: the pregnancy note for a visit is not on an urgent result; the one for
    the staff who see the person today is, and the trace says why the other did not match."""
    answers, errors = rulebook.questionnaire.validate(
        {**base_answers(), "pregnant": "yes", "rf_saddle_numbness": True}
    )
    assert errors == {}
    result = evaluate(answers, rulebook.ruleset)
    assert result["outcome"] == "urgent_care"
    assert "pregnancy" not in result["matched_rules"]
    assert "pregnancy_tell_staff" in result["matched_rules"]
    trace = {entry["rule"]: entry for entry in result["trace"]}
    assert trace["pregnancy"]["matched"] is False
    assert trace["pregnancy"]["outcome_fits"] is False
    assert all(c["held"] for c in trace["pregnancy"]["conditions"])
    assert "outcome_fits" not in trace["pregnancy_tell_staff"]
    notes = result["summary"]["clinician"]["notes"]
    assert [n["rule"] for n in notes] == ["pregnancy_tell_staff"]
    assert result["summary"]["patient"]["notes"] == [
        rule.patient_note for rule in rulebook.ruleset.rules if rule.id == "pregnancy_tell_staff"
    ]
    # The same answers with a specialist result: the visit note, not the staff one.
    calm, _ = rulebook.questionnaire.validate({**base_answers(), "pregnant": "yes"})
    calm_result = evaluate(calm, rulebook.ruleset)
    assert "pregnancy" in calm_result["matched_rules"]
    assert "pregnancy_tell_staff" not in calm_result["matched_rules"]


def test_a_clinician_text_names_the_answers_it_rests_on(rulebook: Rulebook) -> None:
    answers, _ = rulebook.questionnaire.validate(
        {
            **base_answers(),
            "medial_branch_block": "yes_twice_or_more",
            "block_relief_percent": 90,
            "second_block_relief_percent": 20,
        }
    )
    result = evaluate(answers, rulebook.ruleset)
    [finding] = result["summary"]["clinician"]["findings"]
    assert finding["rule"] == "discordant_blocks"
    assert "first 90%, second 20%" in finding["text"]
    assert "{" not in finding["text"]
    # An item with no answer is named as not asked.
    one, _ = rulebook.questionnaire.validate(
        {**base_answers(), "medial_branch_block": "yes_once", "block_relief_percent": 70}
    )
    [positive] = evaluate(one, rulebook.ruleset)["summary"]["clinician"]["findings"]
    assert "first 70, second not asked" in positive["text"]
