"""FHIR R4 forms: the Questionnaire resource, reading and writing QuestionnaireResponses."""

from __future__ import annotations

import ast
import copy
import json
import operator
import re
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire
from fhir.resources.R4B.questionnaireresponse import (
    QuestionnaireResponse as FhirQuestionnaireResponse,
)
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from screening import PROJECT_ROOT
from screening.fhir import forms as fhir
from screening.fhir.forms import answers_from_questionnaire_response
from screening.fhir.forms import questionnaire_resource
from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules import conditions
from screening.rules.cases import load_cases
from screening.rules.questionnaire import Group
from screening.rules.questionnaire import Item
from screening.rules.questionnaire import Option
from screening.rules.questionnaire import Questionnaire
from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import load_rules
from tests.support.app import RULES_DIR
from tests.support.examples import examples

# Module level, because hypothesis strategies are built before any fixture runs.
QUESTIONNAIRE = load_rules(RULES_DIR).questionnaire
RESOURCE: dict[str, Any] = dict(questionnaire_resource(QUESTIONNAIRE))
# A value no error message may ever contain: it stands for anything a client sends.
SECRET = "Jane-Doe-555"


def first_item(item_type: str) -> Item:
    """The first item of a type, so the tests follow the data rather than name items."""
    return next(item for item in QUESTIONNAIRE.items if item.type == item_type)


INTEGER = first_item("integer")
BOOLEAN = first_item("boolean")
CHOICE = first_item("choice")
MULTI = first_item("multi_choice")


def questions(resource: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every question of a Questionnaire resource with the linkId of its group."""
    for group in resource["item"]:
        for question in group["item"]:
            yield group["linkId"], question


def walk(node: Any) -> Iterator[Any]:
    """Every value in a JSON document, the document included."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


# --- A FHIR enableWhen evaluator, written from the operator definitions ---------------------


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _fhir_values(questionnaire: Questionnaire, link_id: str, answers: dict[str, Any]) -> list[Any]:
    """The answers FHIR sees for an item: none, one, or one per chosen code."""
    value = answers.get(link_id)
    if value is None:
        return []
    return list(value) if questionnaire.by_link_id[link_id].type == "multi_choice" else [value]


def _entry_holds(entry: dict[str, Any], values: list[Any]) -> bool:
    """One enableWhen: "=" if some answer equals, "!=" if none does, order if some answer fits."""
    op = entry["operator"]
    if op == "exists":
        return bool(values) is entry["answerBoolean"]
    (key,) = [key for key in entry if key.startswith("answer")]
    target = entry[key]["code"] if key == "answerCoding" else entry[key]
    equal = [value for value in values if type(value) is type(target) and value == target]
    if op == "=":
        return bool(equal)
    if op == "!=":
        return not equal
    return any(_ORDER[op](value, target) for value in values)


def fhir_enabled(
    questionnaire: Questionnaire, question: Mapping[str, Any], answers: dict[str, Any]
) -> bool:
    """Whether a FHIR renderer following the spec would enable ``question``."""
    entries = question.get("enableWhen")
    if not entries:
        return True
    results = [
        _entry_holds(entry, _fhir_values(questionnaire, entry["question"], answers))
        for entry in entries
    ]
    return all(results) if question.get("enableBehavior", "all") == "all" else any(results)


# --- Strategies --------------------------------------------------------------------------


def item_values(item: Item) -> st.SearchStrategy[Any]:
    """Any answer the item accepts on its own (exclusive codes stand alone)."""
    codes = [option.code for option in item.options]
    if item.type == "integer":
        assert item.minimum is not None and item.maximum is not None
        return st.integers(item.minimum, item.maximum)
    if item.type == "boolean":
        return st.booleans()
    if item.type == "choice":
        return st.sampled_from(codes)
    exclusive = [option.code for option in item.options if option.exclusive]
    others = [code for code in codes if code not in exclusive]
    return st.one_of(
        st.sampled_from(exclusive).map(lambda code: [code]),
        st.lists(st.sampled_from(others), min_size=1, unique=True),
    )


@st.composite
def answer_sets(draw: st.DrawFn) -> dict[str, Any]:
    """Any valid submission: only enabled items are answered, every one of them."""
    answers: dict[str, Any] = {}
    for item in QUESTIONNAIRE.items:
        if item.enable_when is None or item.enable_when.evaluate(answers):
            answers[item.link_id] = draw(item_values(item))
    return answers


@st.composite
def partial_answers(draw: st.DrawFn) -> dict[str, Any]:
    """Each item answered or not, whatever the conditions say: to compare conditions."""
    answers: dict[str, Any] = {}
    for item in QUESTIONNAIRE.items:
        if draw(st.booleans()):
            answers[item.link_id] = draw(item_values(item))
    return answers


# --- The Questionnaire resource -----------------------------------------------------------


def test_questionnaire_is_a_valid_r4b_resource() -> None:
    """The export passes the R4B model in strict mode and loses nothing in it."""
    model = FhirQuestionnaire.model_validate(RESOURCE, strict=True)
    # Nothing was dropped or coerced on the way through the model.
    assert json.loads(model.model_dump_json()) == RESOURCE


def test_questionnaire_header() -> None:
    """Canonical url, version, name, title and status come from the data."""
    assert RESOURCE["resourceType"] == "Questionnaire"
    assert RESOURCE["id"] == QUESTIONNAIRE.id
    assert RESOURCE["url"] == QUESTIONNAIRE.url
    assert RESOURCE["version"] == QUESTIONNAIRE.version
    assert RESOURCE["title"] == QUESTIONNAIRE.title
    assert RESOURCE["status"] == "active"
    # FHIR's name invariant (que-0): usable as an identifier by code generators.
    assert re.fullmatch(r"[A-Z][A-Za-z0-9_]{0,254}", RESOURCE["name"])


def test_questionnaire_keeps_every_linkid_in_order() -> None:
    """Groups and questions keep our linkIds, order and grouping."""
    assert [group["linkId"] for group in RESOURCE["item"]] == [
        group.link_id for group in QUESTIONNAIRE.groups
    ]
    assert [group["text"] for group in RESOURCE["item"]] == [
        group.text for group in QUESTIONNAIRE.groups
    ]
    assert all(group["type"] == "group" for group in RESOURCE["item"])
    assert [(group, q["linkId"]) for group, q in questions(RESOURCE)] == [
        (item.group, item.link_id) for item in QUESTIONNAIRE.items
    ]


def test_questionnaire_types_required_and_repeats() -> None:
    """Each question has its FHIR type, text and required flag; only multi_choice repeats."""
    expected_type = {"integer": "integer", "boolean": "boolean", "choice": "choice"}
    expected_type["multi_choice"] = "choice"
    for _, question in questions(RESOURCE):
        item = QUESTIONNAIRE.by_link_id[question["linkId"]]
        assert question["type"] == expected_type[item.type]
        assert question["text"] == item.text
        assert question["required"] is item.required
        # Only pick-all-that-fit items repeat; FHIR's default is not repeating.
        assert question.get("repeats", False) is (item.type == "multi_choice")


def test_answer_options_are_ours() -> None:
    """Answer options are our codes in our system, exclusive ones marked."""
    for _, question in questions(RESOURCE):
        item = QUESTIONNAIRE.by_link_id[question["linkId"]]
        if not item.options:
            assert "answerOption" not in question
            continue
        codings = [option["valueCoding"] for option in question["answerOption"]]
        assert codings == [
            {"system": QUESTIONNAIRE.code_system, "code": o.code, "display": o.display}
            for o in item.options
        ]
        exclusive = [
            option.get("extension") == [{"url": fhir.OPTION_EXCLUSIVE_URL, "valueBoolean": True}]
            for option in question["answerOption"]
        ]
        assert exclusive == [o.exclusive for o in item.options]


def test_integer_ranges_use_the_standard_extensions() -> None:
    """Integer ranges travel as the minValue and maxValue extensions, nothing else does."""
    for _, question in questions(RESOURCE):
        item = QUESTIONNAIRE.by_link_id[question["linkId"]]
        sdc = [e for e in question.get("extension", []) if e["url"].startswith(fhir.SDC)]
        ranges = [e for e in question.get("extension", []) if e not in sdc]
        if item.type != "integer":
            assert not ranges
            continue
        assert ranges == [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/minValue",
                "valueInteger": item.minimum,
            },
            {
                "url": "http://hl7.org/fhir/StructureDefinition/maxValue",
                "valueInteger": item.maximum,
            },
        ]


def test_enable_when_reads_earlier_questions_with_their_own_answers() -> None:
    """Each enableWhen names an earlier question and an answer that question can have."""
    earlier: list[str] = []
    for _, question in questions(RESOURCE):
        item = QUESTIONNAIRE.by_link_id[question["linkId"]]
        entries = question.get("enableWhen", [])
        assert bool(entries) is (item.enable_when is not None)
        # que-12: enableBehavior exactly when there is more than one enableWhen.
        assert ("enableBehavior" in question) is (len(entries) > 1)
        for entry in entries:
            assert entry["question"] in earlier
            source = QUESTIONNAIRE.by_link_id[entry["question"]]
            (key,) = [key for key in entry if key.startswith("answer")]
            if entry["operator"] == "exists":
                # que-7: "exists" takes a boolean.
                assert key == "answerBoolean"
            elif source.options:
                assert key == "answerCoding"
                assert entry[key]["system"] == QUESTIONNAIRE.code_system
                assert entry[key]["code"] in source.codes
            else:
                assert key == fhir.VALUE_KEYS[source.type].replace("value", "answer")
        earlier.append(item.link_id)


def test_no_empty_arrays_or_objects() -> None:
    """The export is FHIR JSON: no empty arrays or objects."""
    # FHIR JSON forbids empty arrays and objects; the models accept them.
    assert all(node not in ([], {}) for node in walk(RESOURCE))


@settings(max_examples=examples(150), deadline=None)
@given(partial_answers())
def test_enable_when_means_what_the_condition_means(answers: dict[str, Any]) -> None:
    """A renderer following FHIR enables exactly the items our conditions enable."""
    for _, question in questions(RESOURCE):
        condition = QUESTIONNAIRE.by_link_id[question["linkId"]].enable_when
        expected = True if condition is None else condition.evaluate(answers)
        assert fhir_enabled(QUESTIONNAIRE, question, answers) is expected


# --- Translating each kind of condition, on a small questionnaire --------------------------

TOY_SYSTEM = "https://example.org/toy-codes"


def toy(enable_when: dict[str, Any]) -> Questionnaire:
    """A small questionnaire of every item type whose last item has ``enable_when``."""

    def options(*codes: str, exclusive: str = "") -> tuple[Option, ...]:
        """Options whose display is the code in capitals."""
        return tuple(Option(code, code.upper(), code == exclusive) for code in codes)

    items = (
        Item("n", "integer", "N?", True, "g1", minimum=0, maximum=10),
        Item("b", "boolean", "B?", True, "g1"),
        Item("c", "choice", "C?", False, "g1", options("x", "y", "z")),
        Item("m", "multi_choice", "M?", False, "g2", options("p", "q", "r", exclusive="r")),
        Item(
            "t",
            "integer",
            "T?",
            True,
            "g2",
            minimum=0,
            maximum=5,
            enable_when=conditions.parse(enable_when),
            enable_when_data=enable_when,
        ),
    )
    return Questionnaire(
        id="toy",
        version="0.0.1",
        title="Toy",
        url="https://example.org/Questionnaire/toy",
        code_system=TOY_SYSTEM,
        groups=(Group("g1", "One"), Group("g2", "Two")),
        items=items,
        sha256="0" * 64,
    )


def toy_answer_sets() -> Iterator[dict[str, Any]]:
    """Every mix of unanswered and answered sources of the toy questionnaire."""
    for n in (None, 0, 3, 5, 9):
        for b in (None, True, False):
            for c in (None, "x", "y", "z"):
                for m in (None, ["p"], ["q"], ["p", "q"], ["r"]):
                    answers = {"n": n, "b": b, "c": c, "m": m}
                    yield {key: value for key, value in answers.items() if value is not None}


def coding(code: str) -> dict[str, str]:
    """A toy answer Coding."""
    return {"system": TOY_SYSTEM, "code": code, "display": code.upper()}


NOT_N_AT_LEAST_5 = {"not": {"item": "n", "at_least": 5}}


@pytest.mark.parametrize(
    ("condition", "entries", "behaviour"),
    [
        ({"item": "c", "equals": "x"}, [("c", "=", "answerCoding", coding("x"))], None),
        ({"item": "n", "equals": 3}, [("n", "=", "answerInteger", 3)], None),
        ({"item": "b", "equals": True}, [("b", "=", "answerBoolean", True)], None),
        (
            {"item": "c", "one_of": ["x", "y"]},
            [("c", "=", "answerCoding", coding("x")), ("c", "=", "answerCoding", coding("y"))],
            "any",
        ),
        (
            {"item": "n", "one_of": [0, 9]},
            [("n", "=", "answerInteger", 0), ("n", "=", "answerInteger", 9)],
            "any",
        ),
        (
            {"item": "m", "contains_any": ["p", "q"]},
            [("m", "=", "answerCoding", coding("p")), ("m", "=", "answerCoding", coding("q"))],
            "any",
        ),
        (
            {"not": {"item": "m", "contains_any": ["r"]}},
            [("m", "!=", "answerCoding", coding("r"))],
            None,
        ),
        (
            {"not": {"item": "m", "contains_any": ["p", "r"]}},
            [("m", "!=", "answerCoding", coding("p")), ("m", "!=", "answerCoding", coding("r"))],
            "all",
        ),
        ({"not": {"item": "c", "equals": "x"}}, [("c", "!=", "answerCoding", coding("x"))], None),
        ({"item": "c", "answered": True}, [("c", "exists", "answerBoolean", True)], None),
        ({"item": "m", "answered": False}, [("m", "exists", "answerBoolean", False)], None),
        ({"not": {"item": "c", "answered": True}}, [("c", "exists", "answerBoolean", False)], None),
        ({"item": "n", "less_than": 5}, [("n", "<", "answerInteger", 5)], None),
        ({"item": "n", "at_most": 5}, [("n", "<=", "answerInteger", 5)], None),
        ({"item": "n", "greater_than": 5}, [("n", ">", "answerInteger", 5)], None),
        ({"item": "n", "at_least": 5}, [("n", ">=", "answerInteger", 5)], None),
        (
            NOT_N_AT_LEAST_5,
            [("n", "exists", "answerBoolean", False), ("n", "<", "answerInteger", 5)],
            "any",
        ),
        (
            {"all": [{"item": "b", "equals": True}, {"item": "n", "at_least": 3}]},
            [("b", "=", "answerBoolean", True), ("n", ">=", "answerInteger", 3)],
            "all",
        ),
        (
            {"any": [{"item": "b", "equals": True}, {"item": "c", "one_of": ["x", "y"]}]},
            [
                ("b", "=", "answerBoolean", True),
                ("c", "=", "answerCoding", coding("x")),
                ("c", "=", "answerCoding", coding("y")),
            ],
            "any",
        ),
        (
            {"not": {"any": [{"item": "b", "equals": True}, {"item": "c", "equals": "x"}]}},
            [("b", "!=", "answerBoolean", True), ("c", "!=", "answerCoding", coding("x"))],
            "all",
        ),
        (
            {"not": {"not": {"item": "c", "equals": "x"}}},
            [("c", "=", "answerCoding", coding("x"))],
            None,
        ),
        ({"all": [{"item": "c", "equals": "x"}]}, [("c", "=", "answerCoding", coding("x"))], None),
        ({"always": True}, [], None),
    ],
)
def test_each_condition_translates_exactly(
    condition: dict[str, Any], entries: list[tuple[str, str, str, Any]], behaviour: str | None
) -> None:
    """Each condition form gives the expected enableWhen, true on exactly the same answers."""
    questionnaire = toy(condition)
    resource = questionnaire_resource(questionnaire)
    FhirQuestionnaire.model_validate(resource, strict=True)
    target = resource["item"][-1]["item"][-1]
    assert target.get("enableWhen", []) == [
        {"question": question, "operator": op, key: value} for question, op, key, value in entries
    ]
    assert target.get("enableBehavior") == behaviour
    parsed = questionnaire.by_link_id["t"].enable_when
    assert parsed is not None
    for answers in toy_answer_sets():
        assert fhir_enabled(questionnaire, target, answers) is parsed.evaluate(answers), answers


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (
            {
                "all": [
                    {"any": [{"item": "b", "equals": True}, {"item": "n", "equals": 1}]},
                    {"item": "c", "equals": "x"},
                ]
            },
            "mixes 'all' and 'any'",
        ),
        ({"all": [NOT_N_AT_LEAST_5, {"item": "b", "equals": True}]}, "mixes 'all' and 'any'"),
        ({"not": {"always": True}}, "'always'"),
        ({"any": [{"always": True}, {"item": "b", "equals": True}]}, "'always'"),
    ],
)
def test_conditions_fhir_cannot_express_are_refused(condition: dict[str, Any], reason: str) -> None:
    """A condition with no FHIR form is a ValueError naming the item and the reason."""
    questionnaire = toy(condition)
    with pytest.raises(ValueError, match="item 't': enable_when cannot be written") as info:
        questionnaire_resource(questionnaire)
    assert reason in str(info.value)


# --- QuestionnaireResponse: round trips -----------------------------------------------------


@pytest.mark.parametrize("nested", [True, False])
@settings(max_examples=examples(100), deadline=None)
@given(answers=answer_sets())
def test_any_valid_answers_round_trip(nested: bool, answers: dict[str, Any]) -> None:
    """Valid answers survive a trip through a (nested or flat) QuestionnaireResponse."""
    response: dict[str, Any] = dict(
        questionnaire_response_from_answers(answers, QUESTIONNAIRE, nested=nested)
    )
    FhirQuestionnaireResponse.model_validate(response, strict=True)
    read, errors = answers_from_questionnaire_response(response, QUESTIONNAIRE)
    assert errors == {}
    assert read == answers
    assert QUESTIONNAIRE.validate(read) == QUESTIONNAIRE.validate(answers)


def test_nested_response_mirrors_the_groups(valid_answers: dict[str, Any]) -> None:
    """A nested response follows the groups; a flat one keeps item order."""
    response: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, QUESTIONNAIRE)
    )
    assert response["questionnaire"] == f"{QUESTIONNAIRE.url}|{QUESTIONNAIRE.version}"
    assert response["status"] == "completed"
    for group in response["item"]:
        assert "answer" not in group
        for question in group["item"]:
            assert QUESTIONNAIRE.by_link_id[question["linkId"]].group == group["linkId"]
    flat: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, QUESTIONNAIRE, nested=False)
    )
    assert [q["linkId"] for q in flat["item"]] == list(valid_answers)
    assert all(node not in ([], {}) for node in walk(response))


def test_rule_cases_give_the_same_result_through_fhir(rulebook: Rulebook) -> None:
    """Every rule case FHIR can carry validates the same through FHIR as natively."""
    checked = 0
    for case in load_cases(rulebook):
        try:
            response: dict[str, Any] = dict(
                questionnaire_response_from_answers(case.answers, rulebook.questionnaire)
            )
        except ValueError:
            # Answers of the wrong JSON type or unknown items: FHIR has no way to carry them.
            continue
        read, errors = answers_from_questionnaire_response(response, rulebook.questionnaire)
        assert errors == {}, case.name
        assert rulebook.questionnaire.validate(read) == rulebook.questionnaire.validate(
            case.answers
        ), case.name
        checked += 1
    assert checked >= 40


def test_missing_and_empty_answers_are_no_answer(valid_answers: dict[str, Any]) -> None:
    """A left-out question and an empty answer list both mean no answer."""
    response: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, QUESTIONNAIRE, nested=False)
    )
    response["item"] = [
        {**q, "answer": []} if q["linkId"] == INTEGER.link_id else q
        for q in response["item"]
        if q["linkId"] != BOOLEAN.link_id
    ]
    read, errors = answers_from_questionnaire_response(response, QUESTIONNAIRE)
    assert errors == {}
    native = {k: v for k, v in valid_answers.items() if k not in (INTEGER.link_id, BOOLEAN.link_id)}
    assert read == native
    assert QUESTIONNAIRE.validate(read) == QUESTIONNAIRE.validate(native)


def test_a_response_without_items_has_no_answers() -> None:
    """A response with no items reads as no answers and no errors."""
    response: dict[str, Any] = dict(questionnaire_response_from_answers({}, QUESTIONNAIRE))
    assert "item" not in response
    assert answers_from_questionnaire_response(response, QUESTIONNAIRE) == ({}, {})


def test_codings_need_no_system_or_display(valid_answers: dict[str, Any]) -> None:
    """A Coding with only a code is enough."""
    response: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, QUESTIONNAIRE)
    )
    for node in walk(response):
        if isinstance(node, dict) and "valueCoding" in node:
            node["valueCoding"] = {"code": node["valueCoding"]["code"]}
    assert answers_from_questionnaire_response(response, QUESTIONNAIRE) == (valid_answers, {})


# --- QuestionnaireResponse: problems ---------------------------------------------------------


def find(resource: dict[str, Any], link_id: str) -> dict[str, Any]:
    """The response item (group or question) with ``link_id``."""
    return next(
        node for node in walk(resource) if isinstance(node, dict) and node.get("linkId") == link_id
    )


def change(link_id: str, **fields: Any) -> Callable[[dict[str, Any]], Any]:
    """A mutation that sets ``fields`` on the response item ``link_id``."""

    def mutate(resource: dict[str, Any]) -> Any:
        """Change the item in place."""
        find(resource, link_id).update(fields)
        return resource

    return mutate


def top(**fields: Any) -> Callable[[dict[str, Any]], Any]:
    """A mutation that sets top-level ``fields`` of the response."""
    return lambda resource: {**resource, **fields}


def append(*entries: Any) -> Callable[[dict[str, Any]], Any]:
    """A mutation that adds ``entries`` to the response's top-level items."""
    return lambda resource: {**resource, "item": [*resource["item"], *entries]}


def move_to_other_group(resource: dict[str, Any]) -> Any:
    """Put the first integer question in a group that is not its own."""
    own = find(resource, INTEGER.group)
    question = find(resource, INTEGER.link_id)
    own["item"].remove(question)
    other = next(group for group in resource["item"] if group["linkId"] != INTEGER.group)
    other["item"].append(question)
    return resource


def nest_group(resource: dict[str, Any]) -> Any:
    """Put the last group inside the first."""
    last = resource["item"].pop()
    resource["item"][0]["item"].append(last)
    return resource


def code(item: Item, index: int = 0) -> dict[str, Any]:
    """A valueCoding answer with one of the item's own codes."""
    return {"valueCoding": {"code": item.options[index].code}}


LAST_GROUP = QUESTIONNAIRE.groups[-1].link_id


P = pytest.param


@pytest.mark.parametrize(
    ("mutate", "keys"),
    [
        P(top(status=SECRET), {"status"}, id="odd status"),
        P(top(status="in-progress"), {"status"}, id="status in progress"),
        P(top(questionnaire=SECRET), {"questionnaire"}, id="other questionnaire"),
        P(top(questionnaire=f"{QUESTIONNAIRE.url}|{SECRET}"), {"questionnaire"}, id="version"),
        P(top(resourceType=SECRET), {"resourceType"}, id="resourceType"),
        P(lambda resource: SECRET, {"resourceType"}, id="a string"),
        P(lambda resource: [SECRET, resource], {"resourceType"}, id="a list"),
        P(top(item=SECRET), {"item"}, id="item not a list"),
        P(append(SECRET), {"item"}, id="item entry not an object"),
        P(append({"linkId": 555, "text": SECRET}), {"item"}, id="linkId not a string"),
        # An odd linkId is counted, not repeated: it could be anything a client typed.
        P(append({"linkId": SECRET, "answer": [{"valueString": SECRET}]}), {"item"}, id="unknown"),
        P(
            append({"linkId": "shoe_size", "answer": [{"valueString": SECRET}]}),
            {"shoe_size"},
            id="unknown, shaped like a linkId",
        ),
        P(change(LAST_GROUP, item=[{"linkId": SECRET}]), {"item"}, id="unknown in a group"),
        P(change(LAST_GROUP, item=SECRET), {LAST_GROUP}, id="group items not a list"),
        P(change(LAST_GROUP, item=[SECRET]), {LAST_GROUP}, id="group entry not an object"),
        P(change(LAST_GROUP, answer=[{"valueString": SECRET}]), {LAST_GROUP}, id="group answer"),
        P(nest_group, {LAST_GROUP}, id="nested group"),
        P(
            change(INTEGER.link_id, answer=[{"valueString": SECRET}]),
            {INTEGER.link_id},
            id="valueString for an integer",
        ),
        P(
            change(INTEGER.link_id, answer=[{"valueInteger": SECRET}]),
            {INTEGER.link_id},
            id="valueInteger a string",
        ),
        P(
            change(INTEGER.link_id, answer=[{"valueInteger": True}]),
            {INTEGER.link_id},
            id="valueInteger true",
        ),
        P(
            change(INTEGER.link_id, answer=[{"valueInteger": 5.5}]),
            {INTEGER.link_id},
            id="valueInteger a fraction",
        ),
        P(
            change(INTEGER.link_id, answer=[{"valueInteger": 5, "valueString": SECRET}]),
            {INTEGER.link_id},
            id="two values",
        ),
        P(change(INTEGER.link_id, answer=SECRET), {INTEGER.link_id}, id="answer not a list"),
        P(change(INTEGER.link_id, answer=[SECRET]), {INTEGER.link_id}, id="answer not an object"),
        P(
            change(INTEGER.link_id, item=[{"linkId": SECRET}]),
            {INTEGER.link_id},
            id="items in a question",
        ),
        P(
            change(INTEGER.link_id, answer=[{"valueInteger": 5, "item": [{"linkId": SECRET}]}]),
            {INTEGER.link_id},
            id="items in an answer",
        ),
        P(move_to_other_group, {INTEGER.link_id}, id="question in another group"),
        P(
            append({"linkId": INTEGER.link_id, "answer": [{"valueInteger": 1}], "text": SECRET}),
            {INTEGER.link_id},
            id="duplicate linkId",
        ),
        P(
            change(BOOLEAN.link_id, answer=[{"valueBoolean": SECRET}]),
            {BOOLEAN.link_id},
            id="valueBoolean a string",
        ),
        P(
            change(BOOLEAN.link_id, answer=[{"valueBoolean": "true"}]),
            {BOOLEAN.link_id},
            id="valueBoolean 'true'",
        ),
        P(
            change(CHOICE.link_id, answer=[{"valueCoding": SECRET}]),
            {CHOICE.link_id},
            id="valueCoding not an object",
        ),
        P(
            change(CHOICE.link_id, answer=[{"valueCoding": {"code": SECRET}}]),
            {CHOICE.link_id},
            id="unknown code",
        ),
        P(
            change(CHOICE.link_id, answer=[{"valueCoding": {"system": SECRET, "code": "x"}}]),
            {CHOICE.link_id},
            id="foreign system and code",
        ),
        P(
            change(
                CHOICE.link_id,
                answer=[{"valueCoding": {"system": SECRET, "code": CHOICE.options[0].code}}],
            ),
            {CHOICE.link_id},
            id="our code in a foreign system",
        ),
        P(
            change(CHOICE.link_id, answer=[{"valueString": SECRET}]),
            {CHOICE.link_id},
            id="valueString for a choice",
        ),
        P(
            change(
                CHOICE.link_id,
                answer=[
                    code(CHOICE, 0),
                    {"valueCoding": {**code(CHOICE, 1)["valueCoding"], "display": SECRET}},
                ],
            ),
            {CHOICE.link_id},
            id="several answers to a single choice",
        ),
        P(
            change(MULTI.link_id, answer=[code(MULTI), {"valueBoolean": True}]),
            {MULTI.link_id},
            id="valueBoolean among codes",
        ),
        P(
            change(MULTI.link_id, answer=[code(MULTI), {"valueCoding": {"code": SECRET}}]),
            {MULTI.link_id},
            id="unknown code among codes",
        ),
    ],
)
def test_problems_are_keyed_and_never_echo_the_submission(
    valid_answers: dict[str, Any],
    mutate: Callable[[dict[str, Any]], Any],
    keys: set[str],
) -> None:
    """Each problem is keyed by linkId or field, and no message repeats what was sent."""
    response: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, QUESTIONNAIRE)
    )
    read, errors = answers_from_questionnaire_response(
        mutate(copy.deepcopy(response)), QUESTIONNAIRE
    )
    assert set(errors) == keys
    assert all(messages for messages in errors.values())
    messages = json.dumps(list(errors.values()))
    assert SECRET not in messages
    for key in keys:
        assert key not in read
    # Nothing is invented: what is read is a part of what was sent.
    assert read.items() <= valid_answers.items()


def test_item_problems_leave_the_other_answers(valid_answers: dict[str, Any]) -> None:
    """A problem with one item does not lose the answers to the others."""
    response: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, QUESTIONNAIRE, nested=False)
    )
    change(CHOICE.link_id, answer=[{"valueCoding": {"code": SECRET}}])(response)
    change(INTEGER.link_id, answer=[{"valueString": SECRET}])(response)
    read, errors = answers_from_questionnaire_response(response, QUESTIONNAIRE)
    assert set(errors) == {CHOICE.link_id, INTEGER.link_id}
    assert read == {
        k: v for k, v in valid_answers.items() if k not in (CHOICE.link_id, INTEGER.link_id)
    }
    # The message for an unknown code lists the item's own codes, never the one sent.
    assert errors[CHOICE.link_id] == [
        f"Every code must be one of: {', '.join(o.code for o in CHOICE.options)}."
    ]


def test_wrong_status_still_reads_the_answers(valid_answers: dict[str, Any]) -> None:
    """A wrong status is reported alongside the answers, which are still read."""
    response: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, QUESTIONNAIRE)
    )
    response["status"] = "amended"
    assert answers_from_questionnaire_response(response, QUESTIONNAIRE) == (
        valid_answers,
        {"status": ["Must be 'completed'."]},
    )


def test_multi_choice_duplicates_and_exclusive_codes_are_left_to_validate(
    valid_answers: dict[str, Any],
) -> None:
    """Repeated or combined exclusive codes pass through, for validate() to judge."""
    exclusive = next(o.code for o in MULTI.options if o.exclusive)
    other = next(o.code for o in MULTI.options if not o.exclusive)
    native = {**valid_answers, MULTI.link_id: [exclusive, other, other]}
    response: dict[str, Any] = dict(questionnaire_response_from_answers(native, QUESTIONNAIRE))
    read, errors = answers_from_questionnaire_response(response, QUESTIONNAIRE)
    assert (read, errors) == (native, {})
    assert QUESTIONNAIRE.validate(read) == QUESTIONNAIRE.validate(native)
    assert MULTI.link_id in QUESTIONNAIRE.validate(read)[1]


# --- questionnaire_response_from_answers refusals ------------------------------------------------


def answering(link_id: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A change of native answers that sets one answer."""
    return lambda answers: {**answers, link_id: value}


@pytest.mark.parametrize(
    "change_answers",
    [
        answering(SECRET, 1),
        answering(INTEGER.link_id, SECRET),
        answering(INTEGER.link_id, True),
        answering(BOOLEAN.link_id, SECRET),
        answering(CHOICE.link_id, SECRET),
        answering(MULTI.link_id, SECRET),
        answering(MULTI.link_id, [SECRET]),
    ],
    ids=["unknown item", "string", "true", "boolean", "unknown code", "no list", "unknown codes"],
)
def test_answers_that_do_not_fit_are_refused(
    valid_answers: dict[str, Any], change_answers: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Unknown items and mistyped answers can't be written, and the error names no value."""
    with pytest.raises(ValueError) as info:
        questionnaire_response_from_answers(change_answers(valid_answers), QUESTIONNAIRE)
    assert SECRET not in str(info.value)


# --- The module stays pure and data-driven ----------------------------------------------------


def test_fhir_module_is_pure_and_names_no_item() -> None:
    """fhir/forms.py imports no Flask or database code and names no item or group."""
    tree = ast.parse((PROJECT_ROOT / "screening" / "fhir" / "forms.py").read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    # Standard library and the questionnaire model only: no Flask, no database.
    allowed = {"__future__", "re", "collections.abc", "typing"}
    allowed |= {"screening.rules.conditions", "screening.rules.questionnaire"}
    assert imported <= allowed
    strings = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    link_ids = {item.link_id for item in QUESTIONNAIRE.items}
    link_ids |= {group.link_id for group in QUESTIONNAIRE.groups}
    assert not strings & link_ids


# --- SDC: pre-filling from the EHR's Patient, and observation extraction ------------------------


def test_the_questionnaire_declares_the_patient_launch_context() -> None:
    [context] = [e for e in RESOURCE["extension"] if e["url"] == fhir.LAUNCH_CONTEXT_URL]
    parts = {part["url"]: part for part in context["extension"]}
    assert parts["name"]["valueCoding"] == {
        "system": "http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext",
        "code": "patient",
    }
    assert parts["type"]["valueCode"] == "Patient"
    FhirQuestionnaire.model_validate(RESOURCE)


def test_initial_expressions_and_codes_come_from_the_questionnaire_data() -> None:
    for _, question in questions(RESOURCE):
        item = QUESTIONNAIRE.by_link_id[question["linkId"]]
        extensions = {e["url"]: e for e in question.get("extension", [])}
        initial = extensions.get(fhir.INITIAL_EXPRESSION_URL)
        if item.initial_expression is None:
            assert initial is None
        else:
            assert initial == {
                "url": fhir.INITIAL_EXPRESSION_URL,
                "valueExpression": {
                    "language": "text/fhirpath",
                    "expression": item.initial_expression,
                },
            }
        extract = extensions.get(fhir.OBSERVATION_EXTRACT_URL)
        assert (item.code is not None) is (extract is not None)
        assert question.get("code") == (None if item.code is None else [dict(item.code)])
    age = QUESTIONNAIRE.by_link_id["age_years"]
    assert age.initial_expression is not None and "%patient.birthDate" in age.initial_expression
    pain = QUESTIONNAIRE.by_link_id["pain_intensity"].code
    assert pain is not None and (pain["system"], pain["code"]) == ("http://loinc.org", "72514-3")
