"""The loaded ruleset: outcomes, sources and ordered rules, as plain objects."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import NotRequired
from typing import TypedDict

from screening.rules.conditions import Condition
from screening.rules.conditions import Holds
from screening.rules.conditions import Traced
from screening.rules.questionnaire import Item
from screening.rules.results import QuestionnaireName

#: How a clinician text names an item that has no answer.
NOT_ASKED = "not asked"

#: A key answer's linkId, the answer type whose words are known in advance, those words by
#: answer, and the item's ``display`` for any other answer.
KeyDisplay = tuple[str, type | None, dict[Any, str], Callable[[Any], str]]


def _key_display(item: Item) -> KeyDisplay:
    """What the clinician summary needs to put one key answer in words."""
    if item.type == "boolean":
        return (
            item.link_id,
            bool,
            {True: item.display(True), False: item.display(False)},
            item.display,
        )
    if item.type == "choice":
        words = {option.code: item.display(option.code) for option in item.options}
        return item.link_id, str, words, item.display
    return item.link_id, None, {}, item.display


@dataclass(frozen=True, slots=True)
class Outcome:
    """One of the four outcomes, with its patient headline."""

    code: str
    indicator: str
    label: str
    headline: str


class OutcomeJson(TypedDict):
    code: str
    indicator: str
    label: str


class RuleJson(TypedDict):
    """A rule as ``GET /v1/ruleset`` serves it; a note names the outcomes it goes with."""

    id: str
    title: str
    kind: str
    outcome: str | None
    when: Mapping[str, object]
    sources: list[str]
    with_outcomes: NotRequired[list[str]]


class SourceJson(TypedDict):
    id: str
    citation: str
    facts: str


class RulesetJson(TypedDict):
    """The ruleset as ``GET /v1/ruleset`` serves it."""

    id: str
    version: str
    sha256: str
    title: str
    questionnaire: QuestionnaireName
    outcomes: list[OutcomeJson]
    rules: list[RuleJson]
    sources: list[SourceJson]
    context: str


@dataclass(frozen=True, slots=True)
class Source:
    """A guideline or payer document that rules cite."""

    id: str
    citation: str
    facts: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A decision rule (sets the outcome) or a note rule (adds a line)."""

    id: str
    kind: str
    title: str
    condition: Condition
    condition_data: Mapping[str, object]
    sources: tuple[str, ...]
    clinician: str
    outcome: str | None = None
    patient: tuple[str, ...] = ()
    patient_note: str | None = None
    #: The outcomes whose patient summary carries the note; empty: every outcome.
    patient_note_for: tuple[str, ...] = ()
    #: A note rule's outcomes: it holds, and adds its lines, only on a result with one of
    #: them (``with_outcomes`` in the rules data); empty: every outcome.
    with_outcomes: tuple[str, ...] = ()
    #: The items whose answers the clinician text names as ``{linkId}``, each with the
    #: function that puts an answer in words; empty: the text is used as it is.
    clinician_answers: tuple[tuple[str, Callable[[Any], str]], ...] = field(
        default=(), compare=False
    )

    def goes_with(self, outcome: str) -> bool:
        """Whether this rule may hold on a result with ``outcome`` (always, for a decision
        rule or a note that names no outcomes)."""
        return not self.with_outcomes or outcome in self.with_outcomes

    def note_fits(self, outcome: str) -> bool:
        """Whether this note rule's patient note belongs in a summary with ``outcome``."""
        return (
            bool(self.patient_note)
            and self.goes_with(outcome)
            and (not self.patient_note_for or outcome in self.patient_note_for)
        )

    def clinician_text(self, answers: Mapping[str, Any]) -> str:
        """The clinician text, with each ``{linkId}`` it names replaced by that answer in
        words ("not asked" when the item has no answer)."""
        if not self.clinician_answers:
            return self.clinician
        return self.clinician.format_map(
            {
                link_id: NOT_ASKED if answers.get(link_id) is None else display(answers[link_id])
                for link_id, display in self.clinician_answers
            }
        )


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Everything the engine needs, cross-checked against the questionnaire."""

    id: str
    version: str
    sha256: str
    title: str
    questionnaire_id: str
    questionnaire_version: str
    disclaimer: str
    context: str
    outcomes: dict[str, Outcome]
    sources: dict[str, Source]
    rules: tuple[Rule, ...]
    key_answers: tuple[Item, ...]
    _json: RulesetJson | None = field(default=None, init=False, repr=False, compare=False)
    #: What the engine reads for every screening, looked up once here.
    key_displays: tuple[KeyDisplay, ...] = field(init=False, repr=False, compare=False)
    source_citations: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    #: Per rule, in order: the rule, its id, its compiled traced condition, whether it decides.
    steps: tuple[tuple[Rule, str, Traced, bool], ...] = field(init=False, repr=False, compare=False)
    #: The decision rules alone, in order: each one's compiled untraced test, and the rule.
    decisions: tuple[tuple[Holds, Rule], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = tuple(
            (rule, rule.id, rule.condition.traced, rule.kind == "decision") for rule in self.rules
        )
        object.__setattr__(self, "steps", steps)
        decisions = tuple((step[0].condition.holds, step[0]) for step in steps if step[3])
        object.__setattr__(self, "decisions", decisions)
        displays = tuple(_key_display(item) for item in self.key_answers)
        object.__setattr__(self, "key_displays", displays)
        citations = tuple((source.id, source.citation) for source in self.sources.values())
        object.__setattr__(self, "source_citations", citations)

    def card_summary(self, decided: Rule, other_findings: int) -> str:
        """The one-line CDS-style summary (at most 140 characters, checked at load)."""
        assert decided.outcome is not None
        text = f"{self.outcomes[decided.outcome].label}: {decided.title}"
        if other_findings:
            plural = "s" if other_findings > 1 else ""
            text += f" (+{other_findings} more finding{plural})"
        return text

    def to_json(self) -> RulesetJson:
        """The ruleset as ``GET /v1/ruleset`` serves it (built once; don't change it)."""
        if self._json is None:
            # The ruleset never changes once loaded, so neither does its document.
            object.__setattr__(self, "_json", self._build_json())
        assert self._json is not None
        return self._json

    def _build_json(self) -> RulesetJson:
        rules: list[RuleJson] = []
        for rule in self.rules:
            entry: RuleJson = {
                "id": rule.id,
                "title": rule.title,
                "kind": rule.kind,
                "outcome": rule.outcome,
                "when": rule.condition_data,
                "sources": list(rule.sources),
            }
            if rule.kind == "note":
                # A note says which outcomes it goes with; a decision rule gives one.
                entry["with_outcomes"] = list(rule.with_outcomes or self.outcomes)
            rules.append(entry)
        return {
            "id": self.id,
            "version": self.version,
            "sha256": self.sha256,
            "title": self.title,
            "questionnaire": {"id": self.questionnaire_id, "version": self.questionnaire_version},
            "outcomes": [
                {"code": o.code, "indicator": o.indicator, "label": o.label}
                for o in self.outcomes.values()
            ],
            "rules": rules,
            "sources": [
                {"id": s.id, "citation": s.citation, "facts": s.facts}
                for s in self.sources.values()
            ],
            "context": self.context,
        }
