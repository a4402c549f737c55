"""The condition language shared by questionnaire ``enable_when`` and the rules.

A condition is plain data (see ``rules/schema/condition.schema.json``)::

    {"all": [...]}  {"any": [...]}  {"not": {...}}  {"always": true}
    {"item": "<linkId>", "<operator>": <expected>}

It is parsed once, at load, into a small tree of objects, and each node is
compiled there into closures (``holds``, ``traced``) that read an answers
mapping: the dicts are not interpreted again per evaluation. Evaluation can
record a trace: one entry per comparison with the answer it saw and whether it
held.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from screening.rules.results import Step

Answers = Mapping[str, Any]
Trace = list[Step]

#: The item types each operator can be applied to.
OPERATOR_TYPES: dict[str, frozenset[str]] = {
    "equals": frozenset({"integer", "boolean", "choice"}),
    "one_of": frozenset({"integer", "choice"}),
    "contains_any": frozenset({"multi_choice"}),
    "less_than": frozenset({"integer"}),
    "at_most": frozenset({"integer"}),
    "greater_than": frozenset({"integer"}),
    "at_least": frozenset({"integer"}),
    "answered": frozenset({"integer", "boolean", "choice", "multi_choice"}),
}


def _tester(operator: str, expected: Any) -> Callable[[Any], bool]:
    """Return a one-argument test of an answer for ``operator`` and ``expected``."""
    if operator == "equals":
        # `type(...) is` keeps True from equalling 1 and 1 from equalling True.
        return lambda actual: type(actual) is type(expected) and actual == expected
    if operator == "one_of":
        allowed = frozenset(expected)
        return lambda actual: not isinstance(actual, bool) and actual in allowed
    if operator == "contains_any":
        wanted = frozenset(expected)
        return lambda actual: not wanted.isdisjoint(actual)
    if operator == "less_than":
        return lambda actual: bool(actual < expected)
    if operator == "at_most":
        return lambda actual: bool(actual <= expected)
    if operator == "greater_than":
        return lambda actual: bool(actual > expected)
    if operator == "at_least":
        return lambda actual: bool(actual >= expected)
    raise ValueError(f"unknown operator {operator!r}")


Holds = Callable[[Answers], bool]
Traced = Callable[[Answers, Trace], bool]


class Condition:
    """Base of the condition tree.

    Each node is compiled when it is built: ``holds`` tests answers, ``traced``
    tests them and appends each comparison to a trace. Both are closures over the
    node's data, so evaluating reads no attribute and dispatches no method; the
    engine calls ``traced`` for every rule of every screening.
    """

    __slots__ = ()

    holds: Holds
    traced: Traced

    def evaluate(self, answers: Answers, trace: Trace | None = None) -> bool:
        """Return whether the condition holds; append comparisons to ``trace``."""
        if trace is None:
            return self.holds(answers)
        return self.traced(answers, trace)

    def comparisons(self) -> Iterator[Comparison]:
        """Yield every comparison in the tree, in reading order."""
        raise NotImplementedError


def _entry(link_id: str, operator: str, expected: Any, actual: Any, held: bool) -> Step:
    """One trace entry (the generic path; the inlined closures below build the same dict)."""
    return {
        "linkId": link_id,
        "operator": operator,
        "expected": expected,
        "actual": actual,
        "held": held,
    }


def _compile_comparison(link_id: str, operator: str, expected: Any) -> tuple[Holds, Traced]:
    """The two closures of one comparison.

    The tests the rules use most are written out in the closure (a test called
    as a function cost about a third of each comparison); the others call
    ``_tester``'s test. Either way the result is the same bool (answers are JSON
    values: comparing two integers gives a bool, as ``bool(...)`` would). An
    unanswered item makes every comparison on it false, except ``answered: false``.
    """
    if operator == "answered":

        def holds_answered(answers: Answers) -> bool:
            return (answers.get(link_id) is not None) is expected

        def traced_answered(answers: Answers, trace: Trace) -> bool:
            actual = answers.get(link_id)
            held = (actual is not None) is expected
            trace.append(_entry(link_id, operator, expected, actual, held))
            return held

        return holds_answered, traced_answered

    if operator == "equals":
        expected_type = type(expected)

        def holds_equals(answers: Answers) -> bool:
            actual = answers.get(link_id)
            # `type(...) is` keeps True from equalling 1 and 1 from equalling True.
            return actual is not None and type(actual) is expected_type and actual == expected

        def traced_equals(answers: Answers, trace: Trace) -> bool:
            actual = answers.get(link_id)
            held = actual is not None and type(actual) is expected_type and actual == expected
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

        return holds_equals, traced_equals

    if operator == "contains_any":
        wanted = frozenset(expected)

        def holds_contains(answers: Answers) -> bool:
            actual = answers.get(link_id)
            return actual is not None and not wanted.isdisjoint(actual)

        def traced_contains(answers: Answers, trace: Trace) -> bool:
            actual = answers.get(link_id)
            held = actual is not None and not wanted.isdisjoint(actual)
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

        return holds_contains, traced_contains

    if operator == "one_of" and all(type(code) is str for code in expected):
        # Codes are strings: no bool can be among them, so membership alone decides.
        allowed = frozenset(expected)

        def holds_one_of(answers: Answers) -> bool:
            actual = answers.get(link_id)
            return actual is not None and actual in allowed

        def traced_one_of(answers: Answers, trace: Trace) -> bool:
            actual = answers.get(link_id)
            held = actual is not None and actual in allowed
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

        return holds_one_of, traced_one_of

    if operator == "less_than":

        def holds_less(answers: Answers) -> bool:
            actual = answers.get(link_id)
            return actual is not None and actual < expected

        def traced_less(answers: Answers, trace: Trace) -> bool:
            actual = answers.get(link_id)
            held = actual is not None and actual < expected
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

        return holds_less, traced_less

    if operator == "at_least":

        def holds_at_least(answers: Answers) -> bool:
            actual = answers.get(link_id)
            return actual is not None and actual >= expected

        def traced_at_least(answers: Answers, trace: Trace) -> bool:
            actual = answers.get(link_id)
            held = actual is not None and actual >= expected
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

        return holds_at_least, traced_at_least

    test = _tester(operator, expected)

    def holds_test(answers: Answers) -> bool:
        actual = answers.get(link_id)
        return actual is not None and test(actual)

    def traced_test(answers: Answers, trace: Trace) -> bool:
        actual = answers.get(link_id)
        held = actual is not None and test(actual)
        trace.append(_entry(link_id, operator, expected, actual, held))
        return held

    return holds_test, traced_test


@dataclass(frozen=True, slots=True)
class Comparison(Condition):
    """One test of one item's answer."""

    link_id: str
    operator: str
    expected: Any
    holds: Holds = field(init=False, repr=False, compare=False)
    traced: Traced = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        holds, traced = _compile_comparison(self.link_id, self.operator, self.expected)
        object.__setattr__(self, "holds", holds)
        object.__setattr__(self, "traced", traced)

    @classmethod
    def build(cls, link_id: str, operator: str, expected: Any) -> Comparison:
        """Create a comparison (its test is compiled as it is created)."""
        return cls(link_id, operator, expected)

    def comparisons(self) -> Iterator[Comparison]:
        yield self


def _traced_every(parts: tuple[Traced, ...]) -> Traced:
    """Run every part into the trace (so the clinician sees each answer); hold if all held."""
    if len(parts) == 2:
        first, second = parts

        def traced_pair(answers: Answers, trace: Trace) -> bool:
            held = first(answers, trace)
            # Both run before either result is used: `and` alone would skip the second.
            return second(answers, trace) and held

        return traced_pair

    def traced(answers: Answers, trace: Trace) -> bool:
        held = True
        for part in parts:
            if not part(answers, trace):
                held = False
        return held

    return traced


def _traced_some(parts: tuple[Traced, ...]) -> Traced:
    """Run every part into the trace; hold if at least one held."""
    if len(parts) == 2:
        first, second = parts

        def traced_pair(answers: Answers, trace: Trace) -> bool:
            held = first(answers, trace)
            return second(answers, trace) or held

        return traced_pair

    def traced(answers: Answers, trace: Trace) -> bool:
        held = False
        for part in parts:
            if part(answers, trace):
                held = True
        return held

    return traced


@dataclass(frozen=True, slots=True)
class All(Condition):
    """Holds when every part holds."""

    parts: tuple[Condition, ...]
    holds: Holds = field(init=False, repr=False, compare=False)
    traced: Traced = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tests = tuple(part.holds for part in self.parts)

        def holds(answers: Answers) -> bool:
            for test in tests:
                if not test(answers):
                    return False
            return True

        object.__setattr__(self, "holds", holds)
        object.__setattr__(self, "traced", _traced_every(tuple(p.traced for p in self.parts)))

    def comparisons(self) -> Iterator[Comparison]:
        for part in self.parts:
            yield from part.comparisons()


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    """Holds when at least one part holds."""

    parts: tuple[Condition, ...]
    holds: Holds = field(init=False, repr=False, compare=False)
    traced: Traced = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tests = tuple(part.holds for part in self.parts)

        def holds(answers: Answers) -> bool:
            for test in tests:
                if test(answers):
                    return True
            return False

        object.__setattr__(self, "holds", holds)
        object.__setattr__(self, "traced", _traced_some(tuple(p.traced for p in self.parts)))

    def comparisons(self) -> Iterator[Comparison]:
        for part in self.parts:
            yield from part.comparisons()


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """Holds when its part does not."""

    part: Condition
    holds: Holds = field(init=False, repr=False, compare=False)
    traced: Traced = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        part_holds, part_traced = self.part.holds, self.part.traced

        def holds(answers: Answers) -> bool:
            return not part_holds(answers)

        def traced(answers: Answers, trace: Trace) -> bool:
            return not part_traced(answers, trace)

        object.__setattr__(self, "holds", holds)
        object.__setattr__(self, "traced", traced)

    def comparisons(self) -> Iterator[Comparison]:
        yield from self.part.comparisons()


def _always(answers: Answers) -> bool:
    return True


def _always_traced(answers: Answers, trace: Trace) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Always(Condition):
    """Always holds (the last decision rule)."""

    holds: Holds = field(default=_always, init=False, repr=False, compare=False)
    traced: Traced = field(default=_always_traced, init=False, repr=False, compare=False)

    def comparisons(self) -> Iterator[Comparison]:
        return iter(())


def parse(data: Mapping[str, Any]) -> Condition:
    """Build a condition tree from schema-valid data."""
    if "all" in data:
        return All(tuple(parse(part) for part in data["all"]))
    if "any" in data:
        return AnyOf(tuple(parse(part) for part in data["any"]))
    if "not" in data:
        return Not(parse(data["not"]))
    if "always" in data:
        return Always()
    (operator,) = (key for key in data if key != "item")
    return Comparison.build(data["item"], operator, data[operator])
