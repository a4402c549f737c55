"""Answer validation driven by the questionnaire data, and its JSON form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from screening.rules.rulebook import Rulebook


def errors_for(rulebook: Rulebook, answers: dict[str, Any]) -> dict[str, list[str]]:
    """Validate and return only the errors."""
    return rulebook.questionnaire.validate(answers)[1]


def test_valid_answers_pass_in_item_order(
    rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    shuffled = dict(reversed(list(valid_answers.items())))
    clean, errors = rulebook.questionnaire.validate(shuffled)
    assert errors == {}
    assert clean == valid_answers
    assert list(clean) == [i.link_id for i in rulebook.questionnaire.items if i.link_id in clean]


@pytest.mark.parametrize(
    ("link_id", "value"),
    [
        ("age_years", 45.0),
        ("age_years", "45"),
        ("age_years", True),
        ("age_years", False),
        ("age_years", -1),
        ("age_years", 121),
        ("pain_intensity", 11),
        ("pain_intensity", 7.5),
        ("rf_fever", 0),
        ("rf_fever", "false"),
        ("rf_fever", []),
        ("pregnant", "maybe"),
        ("pregnant", True),
        ("pregnant", ["no"]),
        ("leg_symptoms", []),
        ("leg_symptoms", "none"),
        ("leg_symptoms", ["none", "weakness"]),
        ("leg_symptoms", ["weakness", "weakness"]),
        ("leg_symptoms", ["sore_toes"]),
        ("leg_symptoms", [1]),
        ("imaging_done", ["unsure", "mri"]),
        ("imaging_done", ["none", "unsure"]),
    ],
)
def test_wrong_answers_are_reported_by_link_id(
    rulebook: Rulebook, valid_answers: dict[str, Any], link_id: str, value: Any
) -> None:
    valid_answers[link_id] = value
    errors = errors_for(rulebook, valid_answers)
    assert list(errors) == [link_id]
    assert errors[link_id]


def test_messages_never_echo_the_submitted_value(
    rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    secret = "Jane-Doe-555-0100"
    valid_answers.update(
        {
            "pregnant": secret,
            "age_years": secret,
            "leg_symptoms": [secret, "none"],
            "rf_fever": secret,
            "imaging_done": [secret, secret],
        }
    )
    errors = errors_for(rulebook, valid_answers)
    assert set(errors) == {"pregnant", "age_years", "leg_symptoms", "rf_fever", "imaging_done"}
    assert secret not in json.dumps(errors)
    assert "Jane" not in json.dumps(errors)


def test_every_problem_is_reported_at_once(rulebook: Rulebook) -> None:
    errors = errors_for(
        rulebook,
        {"age_years": 200, "pain_intensity": "high", "shoe_size": 9, "leg_symptoms": []},
    )
    assert errors["age_years"] == ["Must be a whole number from 0 to 120."]
    assert errors["pain_intensity"] == ["Must be a whole number."]
    assert errors["shoe_size"] == ["Unknown item."]
    assert errors["leg_symptoms"] == ["Pick at least one answer."]
    # Every required item without an answer is listed too.
    assert errors["rf_fever"] == ["An answer is required."]
    assert errors["pregnant"] == ["An answer is required."]


def test_multi_choice_reports_each_kind_of_problem(
    rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    valid_answers["treatments_tried"] = ["none", "acupuncture", "acupuncture", "magic"]
    messages = errors_for(rulebook, valid_answers)["treatments_tried"]
    assert len(messages) == 3
    assert any("one of" in m for m in messages)
    assert any("only once" in m for m in messages)
    assert "'none' cannot be combined with another answer." in messages


def test_null_is_no_answer(rulebook: Rulebook, valid_answers: dict[str, Any]) -> None:
    valid_answers["rf_fever"] = None
    assert errors_for(rulebook, valid_answers) == {"rf_fever": ["An answer is required."]}


def test_enabled_item_becomes_required(rulebook: Rulebook, valid_answers: dict[str, Any]) -> None:
    valid_answers["medial_branch_block"] = "yes_twice_or_more"
    assert errors_for(rulebook, valid_answers) == {
        "block_relief_percent": ["An answer is required."],
        "second_block_relief_percent": ["An answer is required."],
    }
    valid_answers["block_relief_percent"] = 80
    valid_answers["second_block_relief_percent"] = 85
    assert errors_for(rulebook, valid_answers) == {}


def test_disabled_item_must_be_left_out_and_names_the_controlling_item(
    rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    valid_answers["treatments_tried"] = ["none"]
    errors = errors_for(rulebook, valid_answers)
    assert set(errors) == {"treatment_duration", "treatment_effect"}
    assert "treatments_tried" in errors["treatment_duration"][0]
    del valid_answers["treatment_duration"], valid_answers["treatment_effect"]
    assert errors_for(rulebook, valid_answers) == {}
    # null on a disabled item is no answer, which is fine.
    valid_answers["treatment_duration"] = None
    assert errors_for(rulebook, valid_answers) == {}


def test_items_controlled_by_an_invalid_answer_are_not_judged(
    rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    valid_answers["medial_branch_block"] = "sometimes"
    valid_answers["block_relief_percent"] = 70
    assert set(errors_for(rulebook, valid_answers)) == {"medial_branch_block"}
    del valid_answers["treatments_tried"]
    assert set(errors_for(rulebook, valid_answers)) == {"medial_branch_block", "treatments_tried"}


@pytest.mark.parametrize("answers", [[], "text", 3, None])
def test_a_non_object_is_refused(rulebook: Rulebook, answers: Any) -> None:
    clean, errors = rulebook.questionnaire.validate(answers)
    assert clean == {}
    assert list(errors) == ["answers"]


def test_json_form_lists_items_in_display_order(rulebook: Rulebook) -> None:
    data = rulebook.questionnaire.to_json()
    assert (data["id"], data["version"]) == ("lumbar-rfa-screening", "1.2.0")
    items = {item["linkId"]: item for item in data["items"]}
    assert list(items)[:3] == ["age_years", "pregnant", "pain_location"]
    assert len(items) == 29
    assert items["age_years"]["min"] == 0 and items["age_years"]["max"] == 120
    assert items["leg_symptoms"]["options"][0] == {
        "code": "none",
        "display": "None of these",
        "exclusive": True,
    }
    assert items["block_relief_percent"]["enable_when"] == {
        "item": "medial_branch_block",
        "one_of": ["yes_once", "yes_twice_or_more"],
    }
    assert items["treatment_duration"]["required"] is True
    assert "options" not in items["rf_fever"] and "min" not in items["rf_fever"]
