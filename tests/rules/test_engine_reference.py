"""The compiled engine gives exactly what the interpreting reference gives.

Exactly means the same JSON text: same keys in the same order, ``true`` never
``1``, every trace entry with the answer it saw. Checked on every rule case and
on generated answers, and each condition on its own on arbitrary answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from screening.rules import conditions
from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.results import Step
from screening.rules.rulebook import Package
from screening.rules.rulebook import load_rules
from tests.rules.test_engine import RULEBOOK
from tests.support import reference_engine
from tests.support.answers import valid_answers
from tests.support.app import RULES_ROOT
from tests.support.examples import examples

#: Every loaded package, retired ones too: their screenings are still read.
PACKAGES = load_rules(RULES_ROOT).sorted_packages()


def same(left: Any, right: Any) -> bool:
    """Equal as JSON text: order, types and values."""
    return json.dumps(left) == json.dumps(right)


@pytest.mark.parametrize("package", PACKAGES, ids=[p.describe() for p in PACKAGES])
def test_every_case_gives_the_reference_result(package: Package) -> None:
    compared = 0
    for case in load_cases(package):
        clean, errors = package.questionnaire.validate(case.answers)
        if errors:
            continue
        result = evaluate(clean, package.ruleset)
        assert same(result, reference_engine.evaluate(clean, package.ruleset)), case.name
        compared += 1
    assert compared >= 40


@pytest.mark.parametrize("package", PACKAGES, ids=[p.describe() for p in PACKAGES])
def test_generated_answers_give_the_reference_result(package: Package) -> None:
    @settings(max_examples=examples(150), deadline=None)
    @given(valid_answers(package.questionnaire))
    def check(answers: dict[str, Any]) -> None:
        clean, errors = package.questionnaire.validate(answers)
        assert errors == {}
        expected = reference_engine.evaluate(clean, package.ruleset)
        assert same(evaluate(clean, package.ruleset), expected)

    check()


def test_results_share_no_mutable_parts() -> None:
    """Callers edit a result (translated patient summary): the next one must not change."""
    case = next(c for c in load_cases(RULEBOOK) if "errors" not in c.expect)
    clean, _ = RULEBOOK.questionnaire.validate(case.answers)
    first = evaluate(clean, RULEBOOK.ruleset)
    expected = json.dumps(first)
    first["summary"]["patient"]["body"].append("edited")
    first["summary"]["clinician"]["findings"][0]["sources"].append("edited")
    first["summary"]["clinician"]["key_answers"][0]["display"] = "edited"
    first["trace"][0]["conditions"].append(
        {"linkId": "x", "operator": "equals", "expected": 1, "actual": 2, "held": False}
    )
    first["matched_rules"].append("edited")
    assert json.dumps(evaluate(clean, RULEBOOK.ruleset)) == expected


# Any JSON scalar or list an answer could hold, valid for its item or not.
_answer_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 130),
    st.sampled_from(["yes", "no", "unsure", "mri", "none", "x"]),
    st.lists(st.sampled_from(["mri", "ct", "none", "x", "pain_below_knee"]), max_size=3),
)


def _outcome(run: Any) -> tuple[str, Any]:
    """What a call did: its value, or the kind of error it raised."""
    try:
        return "value", run()
    except TypeError:
        return "raised", "TypeError"


@st.composite
def _condition_and_answers(draw: st.DrawFn) -> tuple[Mapping[str, Any], dict[str, Any]]:
    rule = draw(st.sampled_from(RULEBOOK.ruleset.rules))
    data = rule.condition_data
    link_ids = {c.link_id for c in conditions.parse(data).comparisons()}
    answers = {link_id: draw(_answer_values) for link_id in sorted(link_ids)}
    return data, answers


@settings(max_examples=examples(600), deadline=None)
@given(_condition_and_answers())
def test_each_condition_holds_as_the_reference_on_any_answers(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    data, answers = pair
    condition = conditions.parse(data)
    assert _outcome(lambda: condition.evaluate(answers)) == _outcome(
        lambda: reference_engine.holds(data, answers)
    )
    traced: list[Step] = []
    reference_trace: list[dict[str, Any]] = []
    got = _outcome(lambda: condition.evaluate(answers, traced))
    want = _outcome(lambda: reference_engine.holds(data, answers, reference_trace))
    assert same(got, want)
    if got[0] == "value":
        assert same(traced, reference_trace)
