"""FHIR R4 forms of the questionnaire and of a set of answers.

Three pure translations, all driven by the questionnaire data:

- ``questionnaire_resource``: the questionnaire as a FHIR ``Questionnaire``, with the
  ``enable_when`` conditions written as ``enableWhen``, and the SDC ``launchContext``
  (patient), ``initialExpression`` and observation codes the questionnaire data gives;
- ``answers_from_questionnaire_response``: a submitted ``QuestionnaireResponse`` read
  into the service's native answers (``{linkId: value}``), with every structural
  problem listed per linkId;
- ``questionnaire_response_from_answers``: the inverse, for tests and CDS Hooks prefetch.

The answers read from a response are not yet validated: the caller runs
``Questionnaire.validate`` on them, exactly as on a native submission, so ranges,
exclusive codes, required and disabled items are judged in one place. No error
message repeats a submitted value; only our own codes, linkIds and URLs are named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NotRequired
from typing import TypedDict

from screening.rules.conditions import All
from screening.rules.conditions import Always
from screening.rules.conditions import AnyOf
from screening.rules.conditions import Comparison
from screening.rules.conditions import Condition
from screening.rules.conditions import Not
from screening.rules.questionnaire import MAX_NAMED_UNKNOWN
from screening.rules.questionnaire import Answers
from screening.rules.questionnaire import AnswerValue
from screening.rules.questionnaire import Errors
from screening.rules.questionnaire import Item
from screening.rules.questionnaire import Questionnaire
from screening.rules.questionnaire import may_name

MIN_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/maxValue"
# From the FHIR extensions pack; its context is Questionnaire.item.answerOption.
OPTION_EXCLUSIVE_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-optionExclusive"
# Structured Data Capture (SDC): pre-filling from the EHR's context, and extraction.
SDC = "http://hl7.org/fhir/uv/sdc"
LAUNCH_CONTEXT_URL = f"{SDC}/StructureDefinition/sdc-questionnaire-launchContext"
LAUNCH_CONTEXT_SYSTEM = f"{SDC}/CodeSystem/launchContext"
INITIAL_EXPRESSION_URL = f"{SDC}/StructureDefinition/sdc-questionnaire-initialExpression"
OBSERVATION_EXTRACT_URL = f"{SDC}/StructureDefinition/sdc-questionnaire-observationExtract"
#: The questionnaire's launch context: the Patient the EHR opens it for (``%patient``).
LAUNCH_CONTEXT = {
    "url": LAUNCH_CONTEXT_URL,
    "extension": [
        {"url": "name", "valueCoding": {"system": LAUNCH_CONTEXT_SYSTEM, "code": "patient"}},
        {"url": "type", "valueCode": "Patient"},
        {"url": "description", "valueString": "The patient who answers the questionnaire"},
    ],
}

#: The FHIR item type for each of our item types.
FHIR_TYPES = {
    "integer": "integer",
    "boolean": "boolean",
    "choice": "choice",
    "multi_choice": "choice",
}
#: The ``value[x]`` (and ``answer[x]`` suffix) that carries each item type's answer.
VALUE_KEYS = {
    "integer": "valueInteger",
    "boolean": "valueBoolean",
    "choice": "valueCoding",
    "multi_choice": "valueCoding",
}

#: A FHIR element whose value is a choice of types (``value[x]``, ``answer[x]``): its key
#: names the type, so no fixed set of fields describes it.
Element = dict[str, object]


class Coding(TypedDict):
    system: str
    code: str
    display: str


class AnswerOption(TypedDict):
    valueCoding: Coding
    extension: NotRequired[list[Element]]


class EnableWhen(TypedDict, total=False):
    """An item's ``enableWhen`` and, with more than one, its ``enableBehavior``."""

    enableWhen: list[Element]
    enableBehavior: str


class QuestionItem(TypedDict):
    """A question of the Questionnaire resource."""

    linkId: str
    text: str
    type: str
    required: bool
    repeats: NotRequired[bool]
    code: NotRequired[list[dict[str, str]]]
    extension: NotRequired[list[Element]]
    enableWhen: NotRequired[list[Element]]
    enableBehavior: NotRequired[str]
    answerOption: NotRequired[list[AnswerOption]]


class GroupItem(TypedDict):
    """A group of the Questionnaire resource, holding its questions."""

    linkId: str
    text: str
    type: str
    item: list[QuestionItem]


class QuestionnaireResource(TypedDict):
    """The questionnaire as a FHIR R4 Questionnaire (``language`` once localized)."""

    resourceType: str
    id: str
    extension: list[object]
    url: str
    version: str
    name: str
    title: str
    status: str
    subjectType: list[str]
    item: list[GroupItem]
    language: NotRequired[str]


class AnsweredItem(TypedDict):
    """A question of a QuestionnaireResponse with its answers."""

    linkId: str
    text: str
    answer: list[Element]


class AnsweredGroup(TypedDict):
    """A group of a QuestionnaireResponse, holding its answered questions."""

    linkId: str
    text: str
    item: list[AnsweredItem]


class QuestionnaireResponseResource(TypedDict):
    """A completed QuestionnaireResponse (``item`` left out when nothing was answered)."""

    resourceType: str
    questionnaire: str
    status: str
    item: NotRequired[list[AnsweredItem] | list[AnsweredGroup]]


# Order comparisons: their FHIR operator, and the operator of their negation.
_ORDER_OPERATORS = {"less_than": "<", "at_most": "<=", "greater_than": ">", "at_least": ">="}
_NEGATED_ORDER = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}

# One translated condition: its enableBehavior ("all" or "any"; None for a single
# enableWhen, which fits under either) and its enableWhen entries.
_Translation = tuple[str | None, list[Element]]


class _Untranslatable(Exception):
    """A condition with no FHIR enableWhen form (turned into a ValueError naming the item)."""


def canonical_reference(questionnaire: Questionnaire) -> str:
    """The versioned canonical a QuestionnaireResponse uses to name our questionnaire."""
    return f"{questionnaire.url}|{questionnaire.version}"


def _computable_name(identifier: str) -> str:
    """A FHIR ``name`` (starts with a capital, letters, digits and _) from our id."""
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", identifier))
    # FHIR's name invariant wants a leading capital letter; an id may start with a digit.
    return name if name[:1].isalpha() else f"Q{name}"


def _coding(questionnaire: Questionnaire, item: Item, code: str) -> Coding:
    """A Coding for one of the item's answer codes."""
    for option in item.options:
        if option.code == code:
            return {"system": questionnaire.code_system, "code": code, "display": option.display}
    raise _Untranslatable(f"item '{item.link_id}' has no answer code '{code}'")


def _typed_answer(questionnaire: Questionnaire, item: Item, prefix: str, value: Any) -> Element:
    """``{prefix + type: value}`` in the item's FHIR type (answer[x] or value[x])."""
    suffix = VALUE_KEYS[item.type].removeprefix("value")
    if item.type == "integer":
        ok = type(value) is int
    elif item.type == "boolean":
        ok = type(value) is bool
    else:
        ok = type(value) is str
    if not ok:
        raise _Untranslatable(f"item '{item.link_id}' is compared with a value of the wrong type")
    if suffix == "Coding":
        return {prefix + suffix: _coding(questionnaire, item, value)}
    return {prefix + suffix: value}


def _entry(
    questionnaire: Questionnaire, comparison: Comparison, operator: str, value: Any
) -> Element:
    """One enableWhen entry on the comparison's item."""
    item = questionnaire.by_link_id.get(comparison.link_id)
    if item is None:
        raise _Untranslatable(f"names unknown item '{comparison.link_id}'")
    entry: Element = {"question": item.link_id, "operator": operator}
    if operator == "exists":
        entry["answerBoolean"] = value
    else:
        entry.update(_typed_answer(questionnaire, item, "answer", value))
    return entry


def _translate_comparison(
    questionnaire: Questionnaire, comparison: Comparison, negated: bool
) -> _Translation:
    """enableWhen entries for one comparison, or for its negation."""
    operator, expected = comparison.operator, comparison.expected
    if operator == "answered":
        return None, [_entry(questionnaire, comparison, "exists", expected is not negated)]
    if operator in ("equals", "one_of", "contains_any"):
        values = [expected] if operator == "equals" else list(expected)
        # FHIR's "=" holds when at least one answer equals the value, so several "="
        # joined by "any" are one_of on a single answer and contains_any on a
        # repeating one. Its "!=" holds when *no* answer equals the value (the
        # R4B/R5 wording; R4's is garbled), which is exactly our negation, including
        # for an unanswered or disabled item, and for a repeating item it means "does
        # not contain". Renderers that read "!=" as "some answer differs" agree on
        # every valid answer whenever the code is exclusive, since an exclusive code
        # stands alone.
        fhir_operator, behaviour = ("!=", "all") if negated else ("=", "any")
        entries = [_entry(questionnaire, comparison, fhir_operator, value) for value in values]
        return (behaviour if len(entries) > 1 else None), entries
    if operator in _ORDER_OPERATORS:
        fhir_operator = _ORDER_OPERATORS[operator]
        if not negated:
            return None, [_entry(questionnaire, comparison, fhir_operator, expected)]
        # Our negation also holds for an unanswered item, where every FHIR order
        # comparison is false, so that case is spelled out with "exists".
        return "any", [
            _entry(questionnaire, comparison, "exists", False),
            _entry(questionnaire, comparison, _NEGATED_ORDER[fhir_operator], expected),
        ]
    raise _Untranslatable(f"operator '{operator}' has no FHIR form")


def _translate(questionnaire: Questionnaire, condition: Condition, negated: bool) -> _Translation:
    """Flatten a condition (negations pushed to the comparisons) into enableWhen entries."""
    if isinstance(condition, Not):
        return _translate(questionnaire, condition.part, not negated)
    if isinstance(condition, Comparison):
        return _translate_comparison(questionnaire, condition, negated)
    if isinstance(condition, All | AnyOf):
        # De Morgan: a negated "all" is an "any" of negations, and the other way round.
        behaviour = "all" if isinstance(condition, All) is not negated else "any"
        entries: list[Element] = []
        for part in condition.parts:
            part_behaviour, part_entries = _translate(questionnaire, part, negated)
            # FHIR has one enableBehavior per item: no "all" inside an "any" or back.
            if part_behaviour not in (None, behaviour):
                raise _Untranslatable("it mixes 'all' and 'any', which FHIR cannot nest")
            entries.extend(part_entries)
        return (behaviour if len(entries) > 1 else None), entries
    if isinstance(condition, Always):
        raise _Untranslatable("'always' only has a FHIR form as the whole condition")
    raise _Untranslatable(f"{type(condition).__name__} has no FHIR form")


def enable_when(questionnaire: Questionnaire, item: Item) -> EnableWhen:
    """The item's ``enableWhen`` (and ``enableBehavior``) fields; empty when always asked.

    Raises ValueError, naming the item, for a condition FHIR cannot express.
    """
    condition = item.enable_when
    # A condition that always holds is the same as no condition at all.
    if condition is None or isinstance(condition, Always):
        return {}
    try:
        behaviour, entries = _translate(questionnaire, condition, negated=False)
    except _Untranslatable as exc:
        raise ValueError(
            f"item '{item.link_id}': enable_when cannot be written as FHIR enableWhen: {exc}"
        ) from None
    fields: EnableWhen = {"enableWhen": entries}
    if len(entries) > 1:
        # Required by FHIR (que-12) whenever there is more than one enableWhen; the
        # translation names it whenever it gives more than one.
        assert behaviour is not None
        fields["enableBehavior"] = behaviour
    return fields


def _question(questionnaire: Questionnaire, item: Item) -> QuestionItem:
    """One question as a FHIR Questionnaire item."""
    question: QuestionItem = {
        "linkId": item.link_id,
        "text": item.text,
        "type": FHIR_TYPES[item.type],
        "required": item.required,
    }
    if item.type == "multi_choice":
        question["repeats"] = True
    if item.code is not None:
        question["code"] = [dict(item.code)]
    extensions: list[Element] = [
        {"url": url, "valueInteger": bound}
        for url, bound in ((MIN_VALUE_URL, item.minimum), (MAX_VALUE_URL, item.maximum))
        if bound is not None
    ]
    if item.initial_expression is not None:
        expression = {"language": "text/fhirpath", "expression": item.initial_expression}
        extensions.append({"url": INITIAL_EXPRESSION_URL, "valueExpression": expression})
    if item.code is not None:
        extensions.append({"url": OBSERVATION_EXTRACT_URL, "valueBoolean": True})
    if extensions:
        question["extension"] = extensions
    when = enable_when(questionnaire, item)
    if "enableWhen" in when:
        question["enableWhen"] = when["enableWhen"]
    if "enableBehavior" in when:
        question["enableBehavior"] = when["enableBehavior"]
    if item.options:
        options = []
        for option in item.options:
            entry: AnswerOption = {"valueCoding": _coding(questionnaire, item, option.code)}
            if option.exclusive:
                entry["extension"] = [{"url": OPTION_EXCLUSIVE_URL, "valueBoolean": True}]
            options.append(entry)
        question["answerOption"] = options
    return question


def questionnaire_resource(questionnaire: Questionnaire) -> QuestionnaireResource:
    """The questionnaire as a FHIR R4 Questionnaire resource (JSON).

    Each group becomes a ``group`` item holding its questions, all with our linkIds.
    Raises ValueError for an ``enable_when`` condition FHIR cannot express.
    """
    groups: list[GroupItem] = []
    for group in questionnaire.groups:
        questions = [
            _question(questionnaire, item)
            for item in questionnaire.items
            if item.group == group.link_id
        ]
        # FHIR forbids empty arrays, and a group with no questions says nothing.
        if questions:
            groups.append(
                {"linkId": group.link_id, "text": group.text, "type": "group", "item": questions}
            )
    return {
        "resourceType": "Questionnaire",
        "id": questionnaire.id,
        "extension": [LAUNCH_CONTEXT],
        "url": questionnaire.url,
        "version": questionnaire.version,
        "name": _computable_name(questionnaire.id),
        "title": questionnaire.title,
        "status": "active",
        "subjectType": ["Patient"],
        "item": groups,
    }


class _ResponseReader:
    """Collects answers and errors while walking a QuestionnaireResponse's items."""

    def __init__(self, questionnaire: Questionnaire) -> None:
        """Start with no answers and no errors."""
        self.questionnaire = questionnaire
        self.group_ids = {group.link_id for group in questionnaire.groups}
        self.answers: Answers = {}
        self.errors: Errors = {}
        self.seen: set[str] = set()
        #: Unknown linkIds named in the errors, and how many more were only counted.
        self.named_unknown: set[str] = set()
        self.strangers = 0

    def error(self, key: str, message: str) -> None:
        """Record one problem under ``key``, once."""
        messages = self.errors.setdefault(key, [])
        if message not in messages:
            messages.append(message)

    def read_items(self, entries: Any, where: str, group: str | None) -> None:
        """Read a list of response items; ``group`` is the enclosing group, if any."""
        if not isinstance(entries, list):
            self.error(where, "'item' must be a list of items.")
            return
        for entry in entries:
            if not isinstance(entry, dict) or type(entry.get("linkId")) is not str:
                self.error(where, "Every item must be an object with a linkId (a string).")
                continue
            link_id: str = entry["linkId"]
            if link_id not in self.group_ids and link_id not in self.questionnaire.by_link_id:
                self.unknown(link_id)
                continue
            if link_id in self.seen:
                self.error(link_id, "Must appear only once.")
                # Whichever copy was read first is no more trustworthy than this one.
                self.answers.pop(link_id, None)
                continue
            self.seen.add(link_id)
            if link_id in self.group_ids:
                self.read_group(entry, link_id, group)
            else:
                self.read_question(entry, self.questionnaire.by_link_id[link_id], group)

    def unknown(self, link_id: str) -> None:
        """Report an item that is not in the questionnaire, without echoing odd linkIds.

        As for native answers: named only when shaped like one of our linkIds and while
        the list stays short; otherwise counted under "item".
        """
        if link_id in self.named_unknown:
            return
        if may_name(link_id) and len(self.named_unknown) < MAX_NAMED_UNKNOWN:
            self.named_unknown.add(link_id)
            self.error(link_id, "Unknown item.")
        else:
            self.strangers += 1

    def read_group(self, entry: Mapping[str, object], link_id: str, parent: str | None) -> None:
        """Read one group item: no answers of its own, its questions inside."""
        if parent is not None:
            self.error(link_id, "Groups cannot be nested; put this group at the top level.")
            return
        if "answer" in entry:
            self.error(link_id, "A group has no answers; answer the questions inside it.")
        if "item" in entry:
            self.read_items(entry["item"], link_id, link_id)

    def read_question(self, entry: Mapping[str, object], item: Item, group: str | None) -> None:
        """Read one question's answers into the native answer for its item."""
        link_id = item.link_id
        if group is not None and group != item.group:
            self.error(link_id, f"Belongs in group '{item.group}' or at the top level.")
            return
        if "item" in entry:
            self.error(link_id, "Must not contain nested items.")
        raw_answers = entry.get("answer", [])
        if not isinstance(raw_answers, list):
            self.error(link_id, "'answer' must be a list of answers.")
            return
        values = [self.read_answer(answer, item) for answer in raw_answers]
        if link_id in self.errors:
            return
        # Every value is usable here: an unusable one recorded an error above.
        if item.type == "multi_choice":
            # Empty means unanswered; duplicates and exclusive codes are left to validate().
            if values:
                self.answers[link_id] = [code for code in values if isinstance(code, str)]
        elif len(values) > 1:
            self.error(link_id, "Takes only one answer.")
        elif values and values[0] is not None:
            self.answers[link_id] = values[0]

    def read_answer(self, answer: Any, item: Item) -> AnswerValue | None:
        """The native value of one answer entry; None (with an error recorded) if unusable."""
        link_id = item.link_id
        expected = VALUE_KEYS[item.type]
        if not isinstance(answer, dict):
            self.error(link_id, "Every answer must be an object.")
            return None
        if "item" in answer:
            self.error(link_id, "Answers must not contain nested items.")
        value_keys = [key for key in answer if key.startswith("value")]
        if value_keys != [expected]:
            self.error(link_id, f"Every answer must have exactly one value, a {expected}.")
            return None
        value = answer[expected]
        if item.type == "integer":
            # JSON true/false and 7.0 are not FHIR integers.
            if type(value) is not int:
                self.error(link_id, "valueInteger must be a whole number.")
                return None
            return value
        if item.type == "boolean":
            if type(value) is not bool:
                self.error(link_id, "valueBoolean must be true or false.")
                return None
            return value
        return self.read_coding(value, item)

    def read_coding(self, coding: Any, item: Item) -> str | None:
        """The code of one answer Coding, checked against the item's codes and our system."""
        link_id = item.link_id
        system = self.questionnaire.code_system
        if not isinstance(coding, dict) or type(coding.get("code")) is not str:
            self.error(link_id, "valueCoding must be an object with a code (a string).")
            return None
        if "system" in coding and coding["system"] != system:
            self.error(link_id, f"Codes must come from the code system {system}.")
            return None
        code: str = coding["code"]
        if code not in item.codes:
            codes = ", ".join(option.code for option in item.options)
            self.error(link_id, f"Every code must be one of: {codes}.")
            return None
        return code


def answers_from_questionnaire_response(
    resource: Any, questionnaire: Questionnaire
) -> tuple[Answers, Errors]:
    """Read a FHIR R4 QuestionnaireResponse into native answers and errors.

    Answers are ``{linkId: value}`` in item order: an int, a bool, a code, or a
    list of codes for a multi_choice item; an item without an answer is absent.
    Items may sit in their groups, as in the Questionnaire, or flat. Errors are
    keyed by linkId, or by the resource field at fault ("resourceType",
    "status", "questionnaire", "item"). An item with an error is left out of the
    answers, so its error should be reported in preference to whatever
    ``questionnaire.validate(answers)`` then says about it.
    """
    if not isinstance(resource, dict) or resource.get("resourceType") != "QuestionnaireResponse":
        return {}, {"resourceType": ["Must be a FHIR QuestionnaireResponse."]}
    reader = _ResponseReader(questionnaire)
    if resource.get("status") != "completed":
        reader.error("status", "Must be 'completed'.")
    reference = canonical_reference(questionnaire)
    if resource.get("questionnaire") != reference:
        reader.error("questionnaire", f"Must be {reference}.")
        # The items belong to some other questionnaire: reading them would only add noise.
        return {}, reader.errors
    if "item" in resource:
        reader.read_items(resource["item"], "item", None)
    if reader.strangers:
        reader.error("item", f"{reader.strangers} more item(s) name no item of this questionnaire.")
    answers = {
        item.link_id: reader.answers[item.link_id]
        for item in questionnaire.items
        if item.link_id in reader.answers
    }
    return answers, reader.errors


def response_answers(questionnaire: Questionnaire, item: Item, value: object) -> list[Element]:
    """The FHIR answer entries for one native answer."""
    values: Sequence[object]
    if item.type == "multi_choice":
        if type(value) is not list:
            raise ValueError(f"item '{item.link_id}': the answer must be a list of codes")
        values = value
    else:
        values = [value]
    try:
        return [_typed_answer(questionnaire, item, "value", one) for one in values]
    except _Untranslatable:
        # Worded without the value: answers may come from a client.
        raise ValueError(
            f"item '{item.link_id}': the answer does not fit the item's type or codes"
        ) from None


def questionnaire_response_from_answers(
    answers: Mapping[str, Any], questionnaire: Questionnaire, *, nested: bool = True
) -> QuestionnaireResponseResource:
    """A completed FHIR R4 QuestionnaireResponse holding native ``answers``.

    With ``nested`` the questions sit in their groups, as in the Questionnaire;
    otherwise they are listed flat. Raises ValueError for an unknown linkId or an
    answer that does not fit its item; ranges and exclusive codes are not checked.
    """
    unknown = [link_id for link_id in answers if link_id not in questionnaire.by_link_id]
    if unknown:
        raise ValueError(f"{len(unknown)} answer(s) name no item of the questionnaire")
    flat: list[AnsweredItem] = []
    by_group: dict[str, list[AnsweredItem]] = {}
    for item in questionnaire.items:
        value = answers.get(item.link_id)
        fhir_answers = [] if value is None else response_answers(questionnaire, item, value)
        # FHIR JSON has no empty arrays: an empty pick-all-that-fit list is left out.
        if not fhir_answers:
            continue
        question: AnsweredItem = {"linkId": item.link_id, "text": item.text, "answer": fhir_answers}
        flat.append(question)
        by_group.setdefault(item.group, []).append(question)
    items: list[AnsweredItem] | list[AnsweredGroup] = flat
    if nested:
        groups: list[AnsweredGroup] = [
            {"linkId": group.link_id, "text": group.text, "item": by_group[group.link_id]}
            for group in questionnaire.groups
            if group.link_id in by_group
        ]
        items = groups
    response: QuestionnaireResponseResource = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": canonical_reference(questionnaire),
        "status": "completed",
    }
    if items:
        response["item"] = items
    return response


def localized(resource: QuestionnaireResource, language: str, texts: Any) -> QuestionnaireResource:
    """A copy of ``questionnaire_resource(...)`` with its texts in another language.

    ``texts`` is an ``i18n.Texts``: title, group texts, item texts and option
    displays keyed by linkId and code. Codes, linkIds and conditions stay as they are.
    """

    def question(entry: QuestionItem) -> QuestionItem:
        link_id = entry["linkId"]
        copy: QuestionItem = {**entry, "text": texts.items[link_id]}
        if "answerOption" in entry:
            displays = texts.options[link_id]
            copy["answerOption"] = [
                {
                    **option,
                    "valueCoding": {
                        **option["valueCoding"],
                        "display": displays[option["valueCoding"]["code"]],
                    },
                }
                for option in entry["answerOption"]
            ]
        return copy

    def group(entry: GroupItem) -> GroupItem:
        return {
            **entry,
            "text": texts.groups[entry["linkId"]],
            "item": [question(child) for child in entry["item"]],
        }

    return {
        **resource,
        "language": language,
        "title": texts.title,
        "item": [group(entry) for entry in resource["item"]],
    }
