"""A stored screening as FHIR R4, to go back into the EHR's record.

``screening_bundle`` turns a stored screening into a ``Bundle`` (type ``collection``):

- the ``QuestionnaireResponse`` of its answers (as ``questionnaire_response_from_answers``
  writes them), in the language it was answered in;
- a ``GuidanceResponse`` for the outcome: status ``success``, a ``reasonCode`` for each
  matched rule (the deciding one first) naming its sources, and ``outputParameters``
  pointing at a ``Parameters`` resource with the outcome code and the patient summary;
- one ``Observation`` per answer to an item that carries a ``code`` in the questionnaire
  data (SDC observation-based extraction: pain intensity as LOINC 72514-3), each
  ``derivedFrom`` the QuestionnaireResponse.

Pure: it reads a ``screening.records.Screening``, and nothing here reads a clock, a
database or a request. Entries refer to each other by ``urn:uuid`` full URLs derived from
the screening id, so the same screening always gives the same Bundle.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from typing import TypedDict

from screening.fhir.forms import Element
from screening.fhir.forms import questionnaire_response_from_answers
from screening.fhir.forms import response_answers
from screening.records import Result
from screening.records import Screening
from screening.rules.questionnaire import Item
from screening.rules.questionnaire import Questionnaire
from screening.rules.results import PatientSummary
from screening.timestamps import rfc3339

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# A subject copied from a submitted QuestionnaireResponse: a plain relative reference only.
_REFERENCE = re.compile(r"^Patient/[A-Za-z0-9\-.]{1,64}$")


def fhir_base(questionnaire: Questionnaire) -> str:
    """The service's FHIR base URL: the questionnaire's canonical without ``/Questionnaire/id``."""
    return questionnaire.url.rsplit("/Questionnaire/", 1)[0]


def _full_url(screening_id: str, part: str) -> str:
    """A stable ``urn:uuid`` for one entry of one screening's Bundle."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'screening:{screening_id}:{part}')}"


def _subject(screening: Screening) -> Element | None:
    """The patient: the submitted response's Patient reference, else the opaque patient_ref."""
    source = screening.source
    if source is not None:
        subject = source.get("subject")
        if isinstance(subject, dict):
            reference = subject.get("reference")
            if isinstance(reference, str) and _REFERENCE.fullmatch(reference):
                return {"reference": reference}
    if screening.patient_ref:
        return {"identifier": {"value": screening.patient_ref}}
    return None


def _with_subject(resource: Element, subject: Element | None) -> Element:
    if subject is not None:
        resource["subject"] = subject
    return resource


def _reason_codes(result: Result, rules_system: str) -> list[Element]:
    """A CodeableConcept per finding and note (every matched rule but a fallback that did not
    decide), the deciding one first, with its sources."""
    clinician = result.clinician
    citations = {source["id"]: source["citation"] for source in clinician["sources"]}
    reasons: list[Element] = []
    for finding in [*clinician["findings"], *clinician["notes"]]:
        cited = "; ".join(f"{s}: {citations[s]}" for s in finding["sources"] if s in citations)
        text = f"{finding['title']}. {finding['text']}"
        reasons.append(
            {
                "coding": [
                    {"system": rules_system, "code": finding["rule"], "display": finding["title"]}
                ],
                "text": f"{text} Sources: {cited}" if cited else text,
            }
        )
    return reasons


def _summary_text(patient: PatientSummary) -> str:
    """The patient summary as one text: headline, sentences, notes, disclaimer."""
    return "\n".join(
        [patient["headline"], *patient["body"], *patient["notes"], patient["disclaimer"]]
    )


def _observation_values(questionnaire: Questionnaire, item: Item, value: Any) -> list[Element]:
    """The Observation value[x] for each answer (one per code of a pick-all-that-fit item):
    the QuestionnaireResponse's answers, a Coding wrapped as Observation's CodeableConcept."""
    return [
        {"valueCodeableConcept": {"coding": [answer["valueCoding"]]}}
        if "valueCoding" in answer
        else answer
        for answer in response_answers(questionnaire, item, value)
    ]


class BundleEntry(TypedDict):
    fullUrl: str
    resource: Element


class Bundle(TypedDict):
    """A ``collection`` Bundle of one screening's resources."""

    resourceType: str
    type: str
    entry: list[BundleEntry]


def screening_bundle(screening: Screening, questionnaire: Questionnaire) -> Bundle:
    """A stored screening as a FHIR R4 ``collection`` Bundle (see the module docstring).

    ``questionnaire`` is the one the screening was answered on. The ruleset is named as the
    screening keeps it (id and version), not as loaded now.
    """
    screening_id = screening.id
    ruleset_id = screening.ruleset.id
    result = screening.result
    base = fhir_base(questionnaire)
    authored = rfc3339(screening.created_at)
    subject = _subject(screening)
    identifier = {"system": f"{base}/screening", "value": screening_id}
    response_url = _full_url(screening_id, "QuestionnaireResponse")
    parameters_url = _full_url(screening_id, "Parameters")

    answered = questionnaire_response_from_answers(screening.answers, questionnaire)
    response = _with_subject(
        {
            "resourceType": "QuestionnaireResponse",
            "identifier": identifier,
            "language": screening.language,
            **{k: v for k, v in answered.items() if k != "resourceType"},
            "authored": authored,
        },
        subject,
    )
    outcome_coding = {
        "system": f"{base}/CodeSystem/{ruleset_id}-outcomes",
        "code": result.outcome,
        "display": result.clinician["outcome_label"],
    }
    parameters: Element = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "outcome", "valueCoding": outcome_coding},
            {"name": "decided_by", "valueString": result.decided_by},
            {"name": "patient_summary", "valueString": _summary_text(result.patient)},
            {"name": "patient_summary_language", "valueCode": screening.language},
        ],
    }
    guidance = _with_subject(
        {
            "resourceType": "GuidanceResponse",
            "identifier": [identifier],
            "moduleCanonical": f"{base}/Library/{ruleset_id}|{screening.ruleset.version}",
            "status": "success",
            "occurrenceDateTime": authored,
            "reasonCode": _reason_codes(result, f"{base}/CodeSystem/{ruleset_id}-rules"),
            "outputParameters": {"reference": parameters_url},
        },
        subject,
    )
    entries: list[BundleEntry] = [
        {"fullUrl": response_url, "resource": response},
        {"fullUrl": _full_url(screening_id, "GuidanceResponse"), "resource": guidance},
        {"fullUrl": parameters_url, "resource": parameters},
    ]
    for item in questionnaire.items:
        value = screening.answers.get(item.link_id)
        if item.code is None or value is None:
            continue
        for index, observed in enumerate(_observation_values(questionnaire, item, value)):
            observation = _with_subject(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
                    "code": {"coding": [dict(item.code)]},
                    "effectiveDateTime": authored,
                    **observed,
                    "derivedFrom": [{"reference": response_url}],
                },
                subject,
            )
            part = f"Observation/{item.link_id}/{index}"
            entries.append({"fullUrl": _full_url(screening_id, part), "resource": observation})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
