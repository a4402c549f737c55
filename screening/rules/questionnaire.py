"""The questionnaire model and answer validation built from its data.

Validation is driven entirely by ``rules/questionnaire.yaml``: at load, each
item gets a small check function (type, range, codes, exclusive codes); then the
``enable_when`` conditions decide which items must, and which must not, have an
answer. Every problem is returned at once, keyed by linkId; no message repeats
a submitted value.

The checks are plain closures rather than a marshmallow schema because
validation sits on every request: ``Schema.load`` measured 52 us per
submission here, the closures about a tenth of that (see ``make bench``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import NotRequired
from typing import TypedDict
from typing import cast

from screening.rules.conditions import Condition


class OptionJson(TypedDict):
    code: str
    display: str
    exclusive: bool


class ItemJson(TypedDict):
    """An item as ``GET /v1/questionnaire`` serves it."""

    linkId: str
    type: str
    text: str
    required: bool
    group: str
    options: NotRequired[list[OptionJson]]
    min: NotRequired[int]
    max: NotRequired[int | None]
    enable_when: NotRequired[Mapping[str, Any]]


class GroupJson(TypedDict):
    linkId: str
    text: str


class QuestionnaireJson(TypedDict):
    """The questionnaire as ``GET /v1/questionnaire`` serves it (``language`` in a
    catalog's copy)."""

    id: str
    version: str
    language: NotRequired[str]
    title: str
    url: str
    sha256: str
    groups: list[GroupJson]
    items: list[ItemJson]


#: A checked answer: a yes/no, a whole number, a code, or the codes of a multi_choice item.
AnswerValue = bool | int | str | list[str]
#: A submission's checked answers by linkId, in item order (no answer: left out).
Answers = dict[str, AnswerValue]

Errors = dict[str, list[str]]
_LINK_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: At most this many unknown names are named in one error response; the rest are counted.
MAX_NAMED_UNKNOWN = 30


def may_name(name: str) -> bool:
    """Whether an unknown name (a linkId, a field) may be repeated in an error message.

    Only when it is shaped like one of ours (lowercase, digits and _, at most 64
    characters): such a name can't carry a patient's name, a note or a long input back.
    """
    return _LINK_ID.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class Option:
    """One answer code of a choice item."""

    code: str
    display: str
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class Item:
    """One question."""

    link_id: str
    type: str
    text: str
    required: bool
    group: str
    options: tuple[Option, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    enable_when: Condition | None = None
    enable_when_data: Mapping[str, Any] | None = None
    #: The FHIR Coding (system, code, display) its answer is recorded under, if any.
    code: Mapping[str, str] | None = None
    #: A FHIRPath expression SDC renderers pre-fill the answer with, if any.
    initial_expression: str | None = None
    _displays: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: display() runs for every key answer of every result.
        displays = {option.code: option.display for option in self.options}
        object.__setattr__(self, "_displays", displays)

    @property
    def codes(self) -> frozenset[str]:
        """The item's answer codes."""
        return frozenset(self._displays)

    def display(self, value: Any) -> str:
        """Render an answer in words (option displays, "Yes"/"No", numbers)."""
        if type(value) is bool:
            return "Yes" if value else "No"
        if type(value) is list:
            return "; ".join([self._displays[code] for code in value])
        return self._displays.get(value, str(value)) if type(value) is str else str(value)


@dataclass(frozen=True, slots=True)
class Group:
    """A presentation group of items."""

    link_id: str
    text: str


Check = Callable[[Any], list[str] | None]
_STR_ONLY = frozenset({str})
#: Integer items with at most this many allowed values get a set of them (the fast path).
_FAST_RANGE = 1000


def _integer_check(minimum: int, maximum: int) -> Check:
    """A JSON integer in range: not a bool, float or string."""
    out_of_range = [f"Must be a whole number from {minimum} to {maximum}."]

    def check(value: Any) -> list[str] | None:
        if type(value) is not int:
            return ["Must be a whole number."]
        if not minimum <= value <= maximum:
            return out_of_range
        return None

    return check


def _boolean_check(value: Any) -> list[str] | None:
    """JSON ``true`` or ``false`` only."""
    return None if type(value) is bool else ["Must be true or false."]


def _choice_check(codes: tuple[str, ...]) -> Check:
    """One of the item's answer codes."""
    allowed = frozenset(codes)
    unknown = [f"Must be one of: {', '.join(codes)}."]

    def check(value: Any) -> list[str] | None:
        if type(value) is not str:
            return ["Must be one answer code (a string)."]
        return None if value in allowed else unknown

    return check


def _multi_choice_check(codes: tuple[str, ...], exclusive: frozenset[str]) -> Check:
    """A non-empty list of distinct codes, where an exclusive code stands alone."""
    allowed = frozenset(codes)
    unknown = f"Every answer must be one of: {', '.join(codes)}."

    def check(value: Any) -> list[str] | None:
        # `map(type, ...)` in C, not a generator: this check runs on every submission.
        if type(value) is not list or not _STR_ONLY.issuperset(map(type, value)):
            return ["Must be a list of answer codes."]
        if not value:
            return ["Pick at least one answer."]
        if allowed.issuperset(value) and (
            len(value) == 1 or (len(set(value)) == len(value) and exclusive.isdisjoint(value))
        ):
            return None
        problems = []
        if not allowed.issuperset(value):
            problems.append(unknown)
        if len(set(value)) != len(value):
            problems.append("Each answer may be given only once.")
        if len(value) > 1:
            # The code comes from our own list (the intersection), so naming it echoes nothing.
            problems.extend(
                f"'{code}' cannot be combined with another answer."
                for code in sorted(exclusive.intersection(value))
            )
        return problems or None

    return check


def _check_for(item: Item) -> Check:
    """The function that checks one item's answer against the item's data."""
    codes = tuple(option.code for option in item.options)
    if item.type == "integer":
        assert item.minimum is not None and item.maximum is not None
        return _integer_check(item.minimum, item.maximum)
    if item.type == "boolean":
        return _boolean_check
    if item.type == "choice":
        return _choice_check(codes)
    exclusive = frozenset(option.code for option in item.options if option.exclusive)
    return _multi_choice_check(codes, exclusive)


def _accepted(item: Item) -> tuple[type, frozenset[Any]] | None:
    """The exact type and every value an item's check accepts, when that is a small set.

    ``validate`` takes a value of that type in that set without calling the check
    (the same answer, without a call); anything else goes to the check, which
    also words the error.
    """
    if item.type == "boolean":
        return bool, frozenset({True, False})
    if item.type == "choice":
        return str, frozenset(option.code for option in item.options)
    if item.type == "integer":
        assert item.minimum is not None and item.maximum is not None
        if item.maximum - item.minimum < _FAST_RANGE:
            return int, frozenset(range(item.minimum, item.maximum + 1))
    return None


class Questionnaire:
    """The loaded questionnaire: items in display order and their validator."""

    def __init__(
        self,
        *,
        id: str,  # noqa: A002 - the contract's field name
        version: str,
        title: str,
        url: str,
        code_system: str,
        groups: tuple[Group, ...],
        items: tuple[Item, ...],
        sha256: str,
    ) -> None:
        self.id = id
        self.version = version
        self.title = title
        self.url = url
        self.code_system = code_system
        self.groups = groups
        self.items = items
        self.sha256 = sha256
        self.by_link_id = {item.link_id: item for item in items}
        self._checks = {item.link_id: _check_for(item) for item in items}
        self._accepted = {
            item.link_id: accepted for item in items if (accepted := _accepted(item)) is not None
        }
        # For each conditional item, the items its condition reads.
        self._depends_on = {
            item.link_id: frozenset(c.link_id for c in item.enable_when.comparisons())
            for item in items
            if item.enable_when is not None
        }
        # What validate() reads for each item, looked up once: it runs on every request.
        self._plan = tuple(
            (
                item.link_id,
                item.required,
                None if item.enable_when is None else item.enable_when.holds,
                self._depends_on.get(item.link_id, frozenset()),
            )
            for item in items
        )

    def validate(self, answers: Any) -> tuple[Answers, Errors]:
        """Check a submission; return the clean answers (in item order) and errors.

        ``null`` and a missing item are the same: no answer. When an item's
        answer is invalid, items whose condition reads it are not judged, since
        whether they are asked is unknown.
        """
        if not isinstance(answers, dict):
            return {}, {"answers": ["Must be an object mapping linkId to answer."]}
        errors: Errors = {}
        loaded: Answers = {}
        checks = self._checks
        accepted = self._accepted
        strangers = 0
        for link_id, value in answers.items():
            fast = accepted.get(link_id)
            if fast is not None and type(value) is fast[0] and value in fast[1]:
                # One of the item's accepted yes/no or code values, exactly.
                loaded[link_id] = cast(AnswerValue, value)
                continue
            check = checks.get(link_id)
            if check is None:
                # Name an unknown item only when it could be a linkId and the list
                # stays short; otherwise count it, so no odd key is repeated back.
                if may_name(link_id) and len(errors) < MAX_NAMED_UNKNOWN:
                    errors[link_id] = ["Unknown item."]
                else:
                    strangers += 1
            elif value is not None:
                problems = check(value)
                if problems is None:
                    loaded[link_id] = value
                else:
                    errors[link_id] = problems
        if strangers:
            errors["answers"] = [f"{strangers} more answer(s) name no item of this questionnaire."]
        undecided = set(errors)
        clean: Answers = {}
        for link_id, required, asked, depends_on in self._plan:
            if asked is not None:
                if undecided and not undecided.isdisjoint(depends_on):
                    undecided.add(link_id)
                    continue
                if not asked(clean):
                    if answers.get(link_id) is not None:
                        readers = ", ".join(sorted(depends_on))
                        errors.setdefault(link_id, []).append(
                            f"Not asked because of the answer to {readers}; leave it out."
                        )
                    continue
            value = loaded.get(link_id)
            if value is not None:
                clean[link_id] = value
            elif required and link_id not in errors:
                errors[link_id] = ["An answer is required."]
                # Items asked only on this answer's strength can't be judged either.
                undecided.add(link_id)
        return clean, errors

    def to_json(self) -> QuestionnaireJson:
        """The questionnaire as ``GET /v1/questionnaire`` serves it."""
        items = []
        for item in self.items:
            entry: ItemJson = {
                "linkId": item.link_id,
                "type": item.type,
                "text": item.text,
                "required": item.required,
                "group": item.group,
            }
            if item.options:
                entry["options"] = [
                    {"code": o.code, "display": o.display, "exclusive": o.exclusive}
                    for o in item.options
                ]
            if item.minimum is not None:
                entry["min"] = item.minimum
                entry["max"] = item.maximum
            if item.enable_when_data is not None:
                entry["enable_when"] = item.enable_when_data
            items.append(entry)
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "url": self.url,
            "sha256": self.sha256,
            "groups": [{"linkId": g.link_id, "text": g.text} for g in self.groups],
            "items": items,
        }
