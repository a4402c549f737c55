"""screening.fhir.results: a stored screening as a FHIR R4 Bundle, checked with fhir.resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from screening.fhir.forms import answers_from_questionnaire_response
from screening.fhir.results import fhir_base
from screening.fhir.results import screening_bundle
from screening.records import QuestionnaireRef
from screening.records import Result
from screening.records import RulesetRef
from screening.records import Screening
from screening.rules.questionnaire import Group
from screening.rules.questionnaire import Item
from screening.rules.questionnaire import Option
from screening.rules.questionnaire import Questionnaire
from screening.rules.results import Finding

SYSTEM = "https://example.org/fhir/CodeSystem/toy-answers"
SNOMED = "http://snomed.info/sct"


def _questionnaire() -> Questionnaire:
    """Items of every type, each with an observation code."""
    options = (Option("a", "Choice A"), Option("b", "Choice B"), Option("none", "None", True))

    def coded(link_id: str, type_: str, **kw: Any) -> Item:
        code = {"system": SNOMED, "code": f"1{len(link_id)}", "display": link_id}
        return Item(link_id, type_, link_id, True, "g", code=code, **kw)

    return Questionnaire(
        id="toy",
        version="0.0.1",
        title="Toy",
        url="https://example.org/fhir/Questionnaire/toy",
        code_system=SYSTEM,
        groups=(Group("g", "Group"),),
        items=(
            coded("count", "integer", minimum=0, maximum=9),
            coded("flag", "boolean"),
            coded("pick", "choice", options=options[:2]),
            coded("picks", "multi_choice", options=options),
            Item("plain", "integer", "plain", False, "g", minimum=0, maximum=9),
        ),
        sha256="0" * 64,
    )


def _record(**changes: Any) -> Screening:
    """A stored screening, its result in the shape the engine writes."""
    finding: Finding = {
        "rule": "r1",
        "title": "Rule one",
        "text": "It held.",
        "sources": ["S1", "S9"],
    }
    note: Finding = {"rule": "n1", "title": "A note", "text": "Also.", "sources": []}
    result = Result(
        outcome="go",
        decided_by="r1",
        matched_rules=("r1", "n1"),
        summary={
            "patient": {
                "headline": "Head.",
                "body": ["One."],
                "notes": ["Note."],
                "disclaimer": "Not a diagnosis.",
            },
            "clinician": {
                "outcome_label": "Go",
                "card_summary": "Go: rule one",
                "findings": [finding],
                "notes": [note],
                "key_answers": [],
                "sources": [{"id": "S1", "citation": "A guideline."}],
            },
        },
        trace=[],
    )
    record = Screening(
        id="0123456789abcdef0123456789abcdef",
        created_at=datetime(2026, 11, 21, 9, 4, 17, 554529, tzinfo=UTC),
        created_by="portal-a",
        patient_ref=None,
        language="en",
        questionnaire=QuestionnaireRef("toy", "1.0.0", "0" * 64),
        ruleset=RulesetRef("toy-rules", "2.0.0", "1" * 64),
        review_status="pending",
        answers={"count": 4, "flag": False, "pick": "b", "picks": ["a", "b"], "plain": 1},
        answers_sha256=None,
        result=result,
        source=None,
    )
    return replace(record, **changes)


def _of(bundle: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_every_coded_answer_is_an_observation_of_its_type() -> None:
    questionnaire = _questionnaire()
    bundle = screening_bundle(_record(), questionnaire)
    Bundle.model_validate(bundle)
    observations = _of(bundle, "Observation")
    values = [
        (o["code"]["coding"][0]["display"], {k: v for k, v in o.items() if k.startswith("value")})
        for o in observations
    ]
    coding = {"system": SYSTEM, "code": "b", "display": "Choice B"}
    assert values == [
        ("count", {"valueInteger": 4}),
        ("flag", {"valueBoolean": False}),
        ("pick", {"valueCodeableConcept": {"coding": [coding]}}),
        (
            "picks",
            {"valueCodeableConcept": {"coding": [{**coding, "code": "a", "display": "Choice A"}]}},
        ),
        ("picks", {"valueCodeableConcept": {"coding": [coding]}}),
    ]
    assert all(o["effectiveDateTime"] == "2026-11-21T09:04:17.554529Z" for o in observations)


def test_the_response_holds_every_answer_and_the_guidance_every_matched_rule() -> None:
    questionnaire = _questionnaire()
    record = _record()
    bundle = screening_bundle(record, questionnaire)
    [response] = _of(bundle, "QuestionnaireResponse")
    assert answers_from_questionnaire_response(response, questionnaire) == (record.answers, {})
    [guidance] = _of(bundle, "GuidanceResponse")
    assert guidance["moduleCanonical"] == "https://example.org/fhir/Library/toy-rules|2.0.0"
    assert [r["coding"][0]["code"] for r in guidance["reasonCode"]] == ["r1", "n1"]
    # Cited sources by citation; an id with no citation is left out, a rule without any too.
    assert guidance["reasonCode"][0]["text"] == "Rule one. It held. Sources: S1: A guideline."
    assert guidance["reasonCode"][1]["text"] == "A note. Also."
    [parameters] = _of(bundle, "Parameters")
    assert parameters["parameter"][0]["valueCoding"]["code"] == "go"
    assert parameters["parameter"][2]["valueString"] == "Head.\nOne.\nNote.\nNot a diagnosis."
    assert "subject" not in response and "subject" not in guidance


@pytest.mark.parametrize(
    ("source", "patient_ref", "subject"),
    [
        ({"subject": {"reference": "Patient/p-1"}}, "MRN-1", {"reference": "Patient/p-1"}),
        ({"subject": {"reference": "https://other.example/Patient/1"}}, "MRN-1", None),
        (
            {"subject": {"reference": "Patient/1", "display": "A Name"}},
            None,
            {"reference": "Patient/1"},
        ),
        (None, "MRN-1", {"identifier": {"value": "MRN-1"}}),
        ({"subject": "Patient/1"}, None, None),
    ],
)
def test_the_subject_is_a_plain_patient_reference_or_the_patient_ref(
    source: Any, patient_ref: str | None, subject: dict[str, Any] | None
) -> None:
    bundle = screening_bundle(_record(source=source, patient_ref=patient_ref), _questionnaire())
    Bundle.model_validate(bundle)
    for entry in bundle["entry"]:
        resource: dict[str, Any] = entry["resource"]
        if resource["resourceType"] == "Parameters":
            continue
        if subject is None:
            # A reference to another server, or not a reference at all, is not copied.
            assert resource.get("subject", {}).get("identifier") == (
                None if patient_ref is None else {"value": patient_ref}
            )
        else:
            assert resource["subject"] == subject


def test_the_same_screening_gives_the_same_bundle_and_another_other_urls() -> None:
    questionnaire = _questionnaire()
    first = screening_bundle(_record(), questionnaire)
    assert screening_bundle(_record(), questionnaire) == first
    other = screening_bundle(_record(id="f" * 32), questionnaire)
    urls = {e["fullUrl"] for e in first["entry"]}
    assert len(urls) == len(first["entry"])
    assert urls.isdisjoint(e["fullUrl"] for e in other["entry"])


def test_the_fhir_base_is_the_questionnaire_canonical_without_its_tail() -> None:
    assert fhir_base(_questionnaire()) == "https://example.org/fhir"
