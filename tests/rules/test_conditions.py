"""The condition language: operators, combinators, unanswered items, traces."""

from __future__ import annotations

from typing import Any

import pytest

from screening.rules import conditions
from screening.rules.results import Step


def holds(data: dict[str, Any], answers: dict[str, Any]) -> bool:
    """Parse ``data`` and evaluate it on ``answers``."""
    return conditions.parse(data).evaluate(answers)


@pytest.mark.parametrize(
    ("data", "answers", "expected"),
    [
        ({"item": "a", "equals": True}, {"a": True}, True),
        ({"item": "a", "equals": True}, {"a": False}, False),
        # A boolean never equals a number, and a number never equals a boolean.
        ({"item": "a", "equals": 1}, {"a": True}, False),
        ({"item": "a", "equals": True}, {"a": 1}, False),
        ({"item": "a", "equals": "yes"}, {"a": "yes"}, True),
        ({"item": "a", "one_of": ["x", "y"]}, {"a": "y"}, True),
        ({"item": "a", "one_of": ["x", "y"]}, {"a": "z"}, False),
        ({"item": "a", "one_of": [1, 2]}, {"a": True}, False),
        ({"item": "a", "contains_any": ["x"]}, {"a": ["w", "x"]}, True),
        ({"item": "a", "contains_any": ["x"]}, {"a": ["w"]}, False),
        ({"item": "a", "less_than": 18}, {"a": 17}, True),
        ({"item": "a", "less_than": 18}, {"a": 18}, False),
        ({"item": "a", "at_most": 18}, {"a": 18}, True),
        ({"item": "a", "at_most": 18}, {"a": 19}, False),
        ({"item": "a", "greater_than": 5}, {"a": 6}, True),
        ({"item": "a", "greater_than": 5}, {"a": 5}, False),
        ({"item": "a", "at_least": 50}, {"a": 50}, True),
        ({"item": "a", "at_least": 50}, {"a": 49}, False),
        ({"item": "a", "answered": True}, {"a": 0}, True),
        ({"item": "a", "answered": True}, {}, False),
        ({"item": "a", "answered": False}, {}, True),
        ({"always": True}, {}, True),
    ],
)
def test_comparison(data: dict[str, Any], answers: dict[str, Any], expected: bool) -> None:
    assert holds(data, answers) is expected


@pytest.mark.parametrize(
    "data",
    [
        {"item": "a", "equals": 0},
        {"item": "a", "one_of": ["x"]},
        {"item": "a", "contains_any": ["x"]},
        {"item": "a", "less_than": 100},
        {"item": "a", "at_least": -1},
    ],
)
def test_comparison_on_an_unanswered_item_does_not_hold(data: dict[str, Any]) -> None:
    assert holds(data, {}) is False
    assert holds(data, {"a": None}) is False


def test_combinators() -> None:
    yes = {"item": "a", "equals": True}
    no = {"item": "b", "equals": True}
    answers = {"a": True, "b": False}
    assert holds({"all": [yes, yes]}, answers) is True
    assert holds({"all": [yes, no]}, answers) is False
    assert holds({"any": [no, yes]}, answers) is True
    assert holds({"any": [no, no]}, answers) is False
    assert holds({"not": no}, answers) is True
    assert holds({"not": {"any": [yes, no]}}, answers) is False


def test_trace_records_every_comparison_with_what_it_saw() -> None:
    condition = conditions.parse(
        {
            "any": [
                {"item": "a", "equals": True},
                {"all": [{"item": "b", "at_least": 50}, {"item": "c", "one_of": ["x"]}]},
            ]
        }
    )
    trace: list[Step] = []
    # The first part already holds; the trace still shows every part.
    assert condition.evaluate({"a": True, "b": 49}, trace) is True
    assert trace == [
        {"linkId": "a", "operator": "equals", "expected": True, "actual": True, "held": True},
        {"linkId": "b", "operator": "at_least", "expected": 50, "actual": 49, "held": False},
        {"linkId": "c", "operator": "one_of", "expected": ["x"], "actual": None, "held": False},
    ]


def test_comparisons_lists_every_leaf_in_order() -> None:
    condition = conditions.parse(
        {"not": {"all": [{"item": "a", "answered": True}, {"item": "b", "equals": "x"}]}}
    )
    assert [(c.link_id, c.operator) for c in condition.comparisons()] == [
        ("a", "answered"),
        ("b", "equals"),
    ]
    assert list(conditions.parse({"always": True}).comparisons()) == []
