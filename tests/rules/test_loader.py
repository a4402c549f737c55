"""A broken rules folder stops start-up with a message naming file, rule and item."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from screening import StartupError
from screening import create_app
from screening.rules.loader import RulesError
from screening.rules.rulebook import load_rules

Edit = Callable[[dict[str, Any]], object]


def _rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(rule for rule in data["rules"] if rule["id"] == rule_id)


def _item(data: dict[str, Any], link_id: str) -> dict[str, Any]:
    return next(i for g in data["groups"] for i in g["items"] if i["linkId"] == link_id)


def _edit(folder: Path, name: str, edit: Edit) -> None:
    path = folder / name
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


RULESET_BREAKS: list[tuple[str, Edit, list[str]]] = [
    (
        "unknown item",
        lambda d: _rule(d, "under_18")["when"].update(item="age"),
        ["ruleset.yaml", "rule 'under_18'", "unknown item 'age'"],
    ),
    (
        "unknown code",
        lambda d: _rule(d, "pain_under_3_months")["when"].update(
            one_of=["less_than_6_weeks", "2_weeks"]
        ),
        ["rule 'pain_under_3_months'", "item 'pain_duration'", "'2_weeks'"],
    ),
    (
        "operator that does not fit the type",
        lambda d: _rule(d, "possible_infection").update(when={"item": "rf_fever", "at_least": 1}),
        ["rule 'possible_infection'", "'at_least'", "item 'rf_fever'"],
    ),
    (
        "number compared with a string",
        lambda d: _rule(d, "under_18").update(when={"item": "age_years", "equals": "18"}),
        ["rule 'under_18'", "item 'age_years'", "whole number"],
    ),
    (
        "yes/no compared with a string",
        lambda d: _rule(d, "major_trauma").update(
            when={"item": "rf_major_trauma", "equals": "yes"}
        ),
        ["rule 'major_trauma'", "item 'rf_major_trauma'", "true or false"],
    ),
    (
        "duplicate rule id",
        lambda d: _rule(d, "major_trauma").update(id="possible_infection"),
        ["rule 'possible_infection'", "used twice"],
    ),
    (
        "last decision rule can fail",
        lambda d: _rule(d, "meets_discussion_criteria").update(
            when={"item": "age_years", "at_least": 18}
        ),
        ["rule 'meets_discussion_criteria'", "must always match"],
    ),
    (
        "no source",
        lambda d: _rule(d, "under_18").update(sources=[]),
        ["rule 'under_18'", "cites no source"],
    ),
    (
        "unknown source",
        lambda d: _rule(d, "under_18").update(sources=["S99"]),
        ["rule 'under_18'", "unknown source 'S99'"],
    ),
    (
        "unknown outcome",
        lambda d: _rule(d, "under_18").update(outcome="see_a_wizard"),
        ["rule 'under_18'", "see_a_wizard"],
    ),
    (
        "schema: missing field",
        lambda d: _rule(d, "under_18").pop("clinician"),
        ["ruleset.yaml", "rule 'under_18'", "'clinician' is a required property"],
    ),
    (
        "schema: note with an outcome",
        lambda d: _rule(d, "pregnancy").update(outcome="urgent_care"),
        ["ruleset.yaml", "rule 'pregnancy'", "outcome"],
    ),
    (
        "schema: condition with two operators",
        lambda d: _rule(d, "under_18")["when"].update(at_most=3),
        ["ruleset.yaml", "rule 'under_18'", "when"],
    ),
    (
        "card summary too long",
        lambda d: (
            _rule(d, "under_18").update(title="x" * 80),
            d["outcomes"][1].update(label="y" * 60),
        ),
        ["rule 'under_18'", "140"],
    ),
    (
        "key answer unknown",
        lambda d: d["key_answers"].append("shoe_size"),
        ["key_answers", "'shoe_size'"],
    ),
    (
        "questionnaire version mismatch",
        lambda d: d["questionnaire"].update(version="2.0.0"),
        ["ruleset.yaml", "2.0.0"],
    ),
    (
        "note for an unknown outcome",
        lambda d: _rule(d, "pregnancy").update(with_outcomes=["see_a_wizard"]),
        ["rule 'pregnancy'", "with_outcomes names unknown outcome 'see_a_wizard'"],
    ),
    (
        "schema: a decision rule naming note outcomes",
        lambda d: _rule(d, "under_18").update(with_outcomes=["urgent_care"]),
        ["ruleset.yaml", "rule 'under_18'", "with_outcomes"],
    ),
    (
        "clinician text naming an unknown item",
        lambda d: _rule(d, "under_18").update(clinician="Age {age} is under 18."),
        ["rule 'under_18'", "{age} names no item of the questionnaire"],
    ),
    (
        "clinician text with a stray brace",
        lambda d: _rule(d, "under_18").update(clinician="Age {age_years is under 18."),
        ["rule 'under_18'", "a brace does not enclose an item's linkId"],
    ),
    (
        "clinician text with a format spec",
        lambda d: _rule(d, "under_18").update(clinician="Age {age_years:>5} is under 18."),
        ["rule 'under_18'", "{age_years} names no item"],
    ),
]


@pytest.mark.parametrize(
    ("label", "edit", "expected"), RULESET_BREAKS, ids=[b[0] for b in RULESET_BREAKS]
)
def test_broken_ruleset_is_named(
    rules_copy: Path, label: str, edit: Edit, expected: list[str]
) -> None:
    _edit(rules_copy, "ruleset.yaml", edit)
    with pytest.raises(RulesError) as caught:
        load_rules(rules_copy)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, (fragment, message)


QUESTIONNAIRE_BREAKS: list[tuple[str, Edit, list[str]]] = [
    (
        "duplicate linkId",
        lambda d: _item(d, "rf_fever").update(linkId="rf_major_trauma"),
        ["questionnaire.yaml", "item 'rf_major_trauma'", "used twice"],
    ),
    (
        "enable_when names a later item",
        lambda d: _item(d, "pregnant").update(enable_when={"item": "rf_fever", "equals": False}),
        ["item 'pregnant'", "enable_when", "'rf_fever' must come before"],
    ),
    (
        "enable_when names an unknown code",
        lambda d: _item(d, "block_relief_percent").update(
            enable_when={"item": "medial_branch_block", "equals": "thrice"}
        ),
        ["item 'block_relief_percent'", "medial_branch_block", "'thrice'"],
    ),
    (
        "duplicate code",
        lambda d: _item(d, "pregnant")["options"].append({"code": "no", "display": "Nope"}),
        ["item 'pregnant'", "listed twice"],
    ),
    (
        "schema: integer without a range",
        lambda d: _item(d, "age_years").pop("max"),
        ["questionnaire.yaml", "item 'age_years'"],
    ),
    (
        "schema: unknown type",
        lambda d: _item(d, "age_years").update(type="float"),
        ["questionnaire.yaml", "item 'age_years'", "float"],
    ),
    (
        "min above max",
        lambda d: _item(d, "pain_intensity").update(min=11),
        ["item 'pain_intensity'", "min is greater than max"],
    ),
]


@pytest.mark.parametrize(
    ("label", "edit", "expected"), QUESTIONNAIRE_BREAKS, ids=[b[0] for b in QUESTIONNAIRE_BREAKS]
)
def test_broken_questionnaire_is_named(
    rules_copy: Path, label: str, edit: Edit, expected: list[str]
) -> None:
    _edit(rules_copy, "questionnaire.yaml", edit)
    with pytest.raises(RulesError) as caught:
        load_rules(rules_copy)
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_every_problem_is_listed_at_once(rules_copy: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        _rule(data, "under_18")["when"]["item"] = "age"
        _rule(data, "major_trauma")["sources"] = ["S99"]

    _edit(rules_copy, "ruleset.yaml", edit)
    with pytest.raises(RulesError) as caught:
        load_rules(rules_copy)
    assert len(caught.value.problems) == 2


def test_yaml_syntax_error_is_named(rules_copy: Path) -> None:
    (rules_copy / "ruleset.yaml").write_text("rules: [unclosed\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"ruleset\.yaml: is not valid YAML"):
        load_rules(rules_copy)


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="rules folder not found"):
        load_rules(tmp_path / "nowhere")


def test_start_up_stops_on_broken_rules(rules_copy: Path) -> None:
    _edit(rules_copy, "ruleset.yaml", lambda d: _rule(d, "under_18")["when"].update(item="age"))
    with pytest.raises(StartupError) as caught:
        create_app({"TESTING": True, "RULES_DIR": str(rules_copy)})
    message = caught.value.format_message()
    assert "SCREENING_RULES_DIR" in message
    assert "rule 'under_18'" in message and "'age'" in message


def test_loaded_ruleset_hash_is_of_the_file(rules_copy: Path) -> None:
    import hashlib

    rulebook = load_rules(rules_copy)
    raw = (rules_copy / "ruleset.yaml").read_bytes()
    assert rulebook.ruleset.sha256 == hashlib.sha256(raw).hexdigest()
