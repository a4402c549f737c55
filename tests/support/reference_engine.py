"""The engine as it was before conditions were compiled: the reference the fast path must match.

It reads each rule's condition from the rule data (``Rule.condition_data``) and
interprets it on every call, with the trace, summaries and result built the way
``screening.rules.engine`` built them when it walked the condition tree. The
tests compare the engine's results with this one's, byte for byte as JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from screening.rules.ruleset import Rule
from screening.rules.ruleset import Ruleset

Trace = list[dict[str, Any]]


def _test(operator: str, expected: Any, actual: Any) -> bool:
    if operator == "equals":
        return type(actual) is type(expected) and actual == expected
    if operator == "one_of":
        return not isinstance(actual, bool) and actual in frozenset(expected)
    if operator == "contains_any":
        return not frozenset(expected).isdisjoint(actual)
    if operator == "less_than":
        return bool(actual < expected)
    if operator == "at_most":
        return bool(actual <= expected)
    if operator == "greater_than":
        return bool(actual > expected)
    if operator == "at_least":
        return bool(actual >= expected)
    raise ValueError(f"unknown operator {operator!r}")


def holds(data: Mapping[str, Any], answers: Mapping[str, Any], trace: Trace | None = None) -> bool:
    """Interpret condition ``data`` on ``answers``; with a trace, every comparison is recorded."""
    if "all" in data:
        if trace is None:
            return all(holds(part, answers) for part in data["all"])
        return all([holds(part, answers, trace) for part in data["all"]])
    if "any" in data:
        if trace is None:
            return any(holds(part, answers) for part in data["any"])
        return any([holds(part, answers, trace) for part in data["any"]])
    if "not" in data:
        return not holds(data["not"], answers, trace)
    if "always" in data:
        return True
    (operator,) = (key for key in data if key != "item")
    link_id, expected = data["item"], data[operator]
    actual = answers.get(link_id)
    if operator == "answered":
        held = (actual is not None) is expected
    else:
        held = actual is not None and _test(operator, expected, actual)
    if trace is not None:
        trace.append(
            {
                "linkId": link_id,
                "operator": operator,
                "expected": expected,
                "actual": actual,
                "held": held,
            }
        )
    return held


def _finding(rule: Rule, answers: Mapping[str, Any]) -> dict[str, Any]:
    # Each {linkId} of the clinician text, in the words of its item's display.
    displays = dict(rule.clinician_answers)
    text = rule.clinician
    for link_id in re.findall(r"\{([a-z0-9_]+)\}", text):
        value = answers.get(link_id)
        text = text.replace(
            "{" + link_id + "}", "not asked" if value is None else displays[link_id](value)
        )
    return {
        "rule": rule.id,
        "title": rule.title,
        "text": text,
        "sources": list(rule.sources),
    }


def evaluate(answers: Mapping[str, Any], ruleset: Ruleset) -> dict[str, Any]:
    """What ``screening.rules.engine.evaluate`` returned before the compiled path."""
    trace: Trace = []
    matched: list[Rule] = []
    decided: Rule | None = None
    held_by: dict[str, bool] = {}
    for rule in ruleset.rules:
        conditions: Trace = []
        held = holds(rule.condition_data, answers, conditions)
        held_by[rule.id] = held
        trace.append({"rule": rule.id, "matched": held, "conditions": conditions})
        if held and decided is None and rule.kind == "decision":
            decided = rule
    assert decided is not None and decided.outcome is not None
    # A note naming its outcomes holds only with one of them; its trace says so.
    for rule, entry in zip(ruleset.rules, trace, strict=True):
        fits = not rule.with_outcomes or decided.outcome in rule.with_outcomes
        if held_by[rule.id] and fits:
            matched.append(rule)
        elif held_by[rule.id]:
            entry["matched"] = False
            entry["outcome_fits"] = False
    # A fallback (condition `always`) that did not decide states nothing about this
    # screening: it is in matched_rules only (rules-v1.md, issue 10 item 7).
    stated = [
        rule
        for rule in matched
        if rule.kind == "note" or rule is decided or "always" not in rule.condition_data
    ]
    findings = [_finding(rule, answers) for rule in stated if rule.kind == "decision"]
    notes = [_finding(rule, answers) for rule in stated if rule.kind == "note"]
    cited = {source for rule in stated for source in rule.sources}
    return {
        "outcome": decided.outcome,
        "decided_by": decided.id,
        "matched_rules": [rule.id for rule in matched],
        "summary": {
            "patient": {
                "headline": ruleset.outcomes[decided.outcome].headline,
                "body": list(decided.patient),
                "notes": [
                    rule.patient_note
                    for rule in matched
                    if rule.patient_note
                    and (not rule.patient_note_for or decided.outcome in rule.patient_note_for)
                ],
                "disclaimer": ruleset.disclaimer,
            },
            "clinician": {
                "outcome_label": ruleset.outcomes[decided.outcome].label,
                "card_summary": ruleset.card_summary(decided, len(findings) - 1),
                "findings": findings,
                "notes": notes,
                "key_answers": [
                    {
                        "linkId": item.link_id,
                        "value": answers.get(item.link_id),
                        "display": item.display(answers[item.link_id])
                        if item.link_id in answers
                        else "Not asked",
                    }
                    for item in ruleset.key_answers
                ],
                "sources": [
                    {"id": source.id, "citation": source.citation}
                    for source in ruleset.sources.values()
                    if source.id in cited
                ],
            },
        },
        "trace": trace,
        "ruleset": {"id": ruleset.id, "version": ruleset.version, "sha256": ruleset.sha256},
    }
