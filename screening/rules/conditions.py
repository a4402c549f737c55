"""The condition language shared by questionnaire ``enable_when`` and the rules.

A condition is plain data (see ``rules/schema/condition.schema.json``)::

    {"all": [...]}  {"any": [...]}  {"not": {...}}  {"always": true}
    {"item": "<linkId>", "<operator>": <expected>}

It is parsed once, at load, into a small tree of objects whose ``evaluate``
method reads an answers mapping. Evaluation can record a trace: one entry per
comparison with the answer it saw and whether it held.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any

Answers = Mapping[str, Any]
Trace = list[dict[str, Any]]

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


class Condition:
    """Base of the condition tree."""

    __slots__ = ()

    def evaluate(self, answers: Answers, trace: Trace | None = None) -> bool:
        """Return whether the condition holds; append comparisons to ``trace``."""
        raise NotImplementedError

    def comparisons(self) -> Iterator[Comparison]:
        """Yield every comparison in the tree, in reading order."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Comparison(Condition):
    """One test of one item's answer."""

    link_id: str
    operator: str
    expected: Any
    _test: Callable[[Any], bool] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, link_id: str, operator: str, expected: Any) -> Comparison:
        """Create a comparison with its test compiled."""
        test = None if operator == "answered" else _tester(operator, expected)
        return cls(link_id, operator, expected, test)

    def evaluate(self, answers: Answers, trace: Trace | None = None) -> bool:
        actual = answers.get(self.link_id)
        if self._test is None:
            held = (actual is not None) is self.expected
        else:
            # An unanswered item makes every comparison on it false.
            held = actual is not None and self._test(actual)
        if trace is not None:
            trace.append(
                {
                    "linkId": self.link_id,
                    "operator": self.operator,
                    "expected": self.expected,
                    "actual": actual,
                    "held": held,
                }
            )
        return held

    def comparisons(self) -> Iterator[Comparison]:
        yield self


@dataclass(frozen=True, slots=True)
class All(Condition):
    """Holds when every part holds."""

    parts: tuple[Condition, ...]

    def evaluate(self, answers: Answers, trace: Trace | None = None) -> bool:
        if trace is None:
            return all(part.evaluate(answers) for part in self.parts)
        # With a trace, evaluate every part so the clinician sees each answer.
        results = [part.evaluate(answers, trace) for part in self.parts]
        return all(results)

    def comparisons(self) -> Iterator[Comparison]:
        for part in self.parts:
            yield from part.comparisons()


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    """Holds when at least one part holds."""

    parts: tuple[Condition, ...]

    def evaluate(self, answers: Answers, trace: Trace | None = None) -> bool:
        if trace is None:
            return any(part.evaluate(answers) for part in self.parts)
        results = [part.evaluate(answers, trace) for part in self.parts]
        return any(results)

    def comparisons(self) -> Iterator[Comparison]:
        for part in self.parts:
            yield from part.comparisons()


@dataclass(frozen=True, slots=True)
class Not(Condition):
    """Holds when its part does not."""

    part: Condition

    def evaluate(self, answers: Answers, trace: Trace | None = None) -> bool:
        return not self.part.evaluate(answers, trace)

    def comparisons(self) -> Iterator[Comparison]:
        yield from self.part.comparisons()


@dataclass(frozen=True, slots=True)
class Always(Condition):
    """Always holds (the last decision rule)."""

    def evaluate(self, answers: Answers, trace: Trace | None = None) -> bool:
        return True

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
