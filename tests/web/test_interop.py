"""FHIR and CDS Hooks through the API, and Spanish end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle as FhirBundle
from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire
from flask.testing import FlaskClient

from screening.fhir.forms import answers_from_questionnaire_response
from screening.fhir.forms import canonical_reference
from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from screening.rules.rulebook import load_rules
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import RULES_ROOT
from tests.support.app import bearer
from tests.support.app import make_app

FHIR = "application/fhir+json"


def fhir_post(
    client: FlaskClient, path: str, resource: dict[str, Any], who: str = "portal-a", **kw: Any
) -> Any:
    """POST a FHIR resource."""
    headers = {**bearer(who), "Content-Type": FHIR, **kw.pop("headers", {})}
    return client.post(path, data=json.dumps(resource), headers=headers, **kw)


# --- questionnaire -----------------------------------------------------------------


def test_questionnaire_as_fhir(client: FlaskClient, rulebook: Rulebook) -> None:
    response = client.get("/v1/questionnaire", headers={"Accept": FHIR})
    assert response.status_code == 200
    assert response.mimetype == FHIR
    resource = response.get_json()
    FhirQuestionnaire.model_validate(resource)
    assert resource["url"] == rulebook.questionnaire.url
    assert resource["version"] == rulebook.questionnaire.version
    plain = client.get("/v1/questionnaire", headers={"Accept": "application/json"})
    assert plain.mimetype == "application/json"
    assert plain.headers["ETag"] != response.headers["ETag"]


def test_questionnaire_as_fhir_in_spanish(client: FlaskClient, rulebook: Rulebook) -> None:
    english = client.get("/v1/questionnaire", headers={"Accept": FHIR}).get_json()
    response = client.get("/v1/questionnaire?lang=es", headers={"Accept": FHIR})
    assert response.headers["Content-Language"] == "es"
    spanish = response.get_json()
    FhirQuestionnaire.model_validate(spanish)
    assert spanish["language"] == "es"

    def questions(resource: dict[str, Any]) -> list[dict[str, Any]]:
        return [q for group in resource["item"] for q in group["item"]]

    pairs = list(zip(questions(english), questions(spanish), strict=True))
    for en, es in pairs:
        assert en["linkId"] == es["linkId"]
        assert en.get("enableWhen") == es.get("enableWhen")
        codes = [o["valueCoding"]["code"] for o in en.get("answerOption", [])]
        assert codes == [o["valueCoding"]["code"] for o in es.get("answerOption", [])]
    assert sum(en["text"] != es["text"] for en, es in pairs) == len(pairs)


@pytest.mark.parametrize(
    ("query", "accept_language", "language"),
    [
        ({"lang": "es"}, None, "es"),
        ({}, "es-MX,es;q=0.9,en;q=0.8", "es"),
        ({}, "fr-FR", "en"),
        ({"lang": "de"}, None, "en"),
        # A language the service does not speak counts as not given (openapi.yaml, Lang).
        ({"lang": "de"}, "es", "es"),
        ({"lang": "en"}, "es", "en"),
        ({}, None, "en"),
    ],
)
def test_questionnaire_language(
    client: FlaskClient, query: dict[str, str], accept_language: str | None, language: str
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = client.get("/v1/questionnaire", query_string=query, headers=headers)
    assert response.headers["Content-Language"] == language
    data = response.get_json()
    assert data["language"] == language
    age = next(item for item in data["items"] if item["linkId"] == "age_years")
    assert ("años" in age["text"]) is (language == "es")


def test_content_language_is_always_set(client: FlaskClient) -> None:
    for path in ("/healthz", "/v1/ruleset", "/v1/nowhere", "/openapi.yaml"):
        assert client.get(path).headers["Content-Language"] == "en", path


# --- QuestionnaireResponse intake ---------------------------------------------------------


@BOTH_DATABASES
@pytest.mark.parametrize("nested", [True, False])
def test_fhir_response_gives_the_native_result_and_is_kept(
    client: FlaskClient,
    store: Store,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
    nested: bool,
) -> None:
    valid_answers.update(medial_branch_block="yes_once", block_relief_percent=70, rf_fever=True)
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire, nested=nested)
    )
    native = client.post("/v1/screenings", json={"answers": valid_answers}, headers=bearer("dr-c"))
    via_fhir = fhir_post(client, "/v1/screenings", resource, who="dr-c")
    assert via_fhir.status_code == 201
    a, b = native.get_json(), via_fhir.get_json()
    for field in ("outcome", "decided_by", "matched_rules", "answers", "summary", "trace"):
        assert a[field] == b[field], field
    record = store.screenings.get(b["id"])
    assert record is not None
    assert record.source == resource
    assert record.answers == valid_answers
    evaluated = fhir_post(client, "/v1/evaluate", resource)
    assert evaluated.status_code == 200
    assert evaluated.get_json()["outcome"] == "urgent_care"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "in-progress"}, "status"),
        ({"questionnaire": "http://example.org/Questionnaire/other|1.0.0"}, "questionnaire"),
        ({"resourceType": "Patient"}, "resourceType"),
    ],
)
def test_unusable_fhir_response_is_422(
    client: FlaskClient,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
    change: dict[str, Any],
    field: str,
) -> None:
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    )
    resource.update(change)
    response = fhir_post(client, "/v1/screenings", resource)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert client.get("/v1/screenings", headers=bearer("dr-c")).get_json()["items"] == []


def test_fhir_answer_errors_are_keyed_by_link_id(
    client: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    del valid_answers["rf_fever"]
    valid_answers["age_years"] = 130
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    )
    response = fhir_post(client, "/v1/evaluate", resource)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"rf_fever", "age_years"}


def test_fhir_is_refused_where_it_is_not_accepted(client: FlaskClient) -> None:
    response = fhir_post(client, "/v1/screenings/abc/review", {"note": "x"}, who="dr-c")
    assert response.status_code == 415


# --- Spanish end to end --------------------------------------------------------------------


@BOTH_DATABASES
def test_a_screening_keeps_the_language_it_was_answered_in(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    valid_answers["rf_saddle_numbness"] = True
    created = client.post(
        "/v1/screenings",
        json={"answers": valid_answers},
        query_string={"lang": "es"},
        headers=bearer("portal-a"),
    )
    assert created.status_code == 201
    assert created.headers["Content-Language"] == "es"
    body = created.get_json()
    headline = body["summary"]["patient"]["headline"]
    assert headline != "Please get medical help today."
    # Read later, in whatever language the portal's browser prefers, it stays Spanish.
    later = client.get(
        f"/v1/screenings/{body['id']}", headers={**bearer("portal-a"), "Accept-Language": "en"}
    )
    assert later.headers["Content-Language"] == "es"
    assert later.get_json()["summary"]["patient"]["headline"] == headline
    full = client.get(f"/v1/screenings/{body['id']}", headers=bearer("dr-c")).get_json()
    assert full["language"] == "es"
    assert full["summary"]["patient"]["headline"] == headline
    assert full["summary"]["clinician"]["findings"][0]["title"] == "Possible cauda equina signs"


def test_fhir_response_language_is_used(
    client: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    )
    resource["language"] = "es"
    response = fhir_post(client, "/v1/evaluate", resource)
    assert response.headers["Content-Language"] == "es"
    assert response.get_json()["summary"]["patient"]["headline"] != (
        "It may be worth talking with a spine specialist."
    )


# --- CDS Hooks -------------------------------------------------------------------------------


def test_discovery(client: FlaskClient, rulebook: Rulebook) -> None:
    services = client.get("/cds-services").get_json()["services"]
    assert len(services) == 1
    service = services[0]
    assert service["hook"] == "patient-view"
    assert service["id"] == "lumbar-rfa-screening"
    prefetch = service["prefetch"]["questionnaireResponse"]
    assert prefetch.startswith("QuestionnaireResponse?subject=Patient/{{context.patientId}}")
    assert canonical_reference(rulebook.questionnaire) in prefetch


def hook_request(prefetched: Any) -> dict[str, Any]:
    """A patient-view request with the given prefetch."""
    return {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/1", "patientId": "1288992"},
        "prefetch": {"questionnaireResponse": prefetched},
    }


@pytest.mark.parametrize(
    ("change", "indicator", "outcome_label"),
    [
        ({"rf_bladder_or_bowel_change": True}, "critical", "Urgent - medical help today"),
        ({"rf_cancer_history": True}, "warning", "See own doctor first"),
        ({"pain_intensity": 3}, "info", "Continue conservative care"),
        ({}, "info", "Discuss with a spine specialist"),
    ],
)
def test_one_card_for_the_latest_response(
    database_url: str,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
    change: dict[str, Any],
    indicator: str,
    outcome_label: str,
) -> None:
    older: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    )
    older["authored"] = "2026-01-01T10:00:00Z"
    latest: dict[str, Any] = dict(
        questionnaire_response_from_answers({**valid_answers, **change}, rulebook.questionnaire)
    )
    latest["authored"] = "2026-06-01T10:00:00Z"
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": latest}, {"resource": older}],
    }
    with make_app(database_url, PUBLIC_URL="https://screening.hospital.test") as app:
        response = app.test_client().post(
            "/cds-services/lumbar-rfa-screening", json=hook_request(bundle), headers=bearer("dr-c")
        )
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] == indicator
    assert len(card["summary"]) <= 140
    assert card["summary"].startswith(outcome_label)
    assert f"**Outcome:** {outcome_label}" in card["detail"]
    assert "not a diagnosis" in card["detail"]
    assert "S1:" in card["detail"] or "S4:" in card["detail"] or "S5:" in card["detail"]
    assert card["source"]["label"] == "Screening rules lumbar-rfa 1.2.0"
    assert card["links"][0]["url"] == "https://screening.hospital.test/review/"
    assert card["links"][0]["type"] == "absolute"


def test_a_prefetched_response_to_an_earlier_served_version_gets_its_own_card(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    # An EHR whose own prefetch carries a response from a portal still on questionnaire
    # 1.1.0: it is decided by that version's default package, not refused or skipped.
    earlier = load_rules(RULES_ROOT).package("lumbar-rfa", "1.1.1")
    assert earlier is not None and earlier.questionnaire.version == "1.1.0"
    items = {item.link_id for item in earlier.questionnaire.items}
    answers = {key: value for key, value in valid_answers.items() if key in items}
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(answers, earlier.questionnaire)
    )
    response = client.post(
        "/cds-services/lumbar-rfa-screening", json=hook_request(resource), headers=bearer("dr-c")
    )
    (card,) = response.get_json()["cards"]
    assert card["source"]["label"] == "Screening rules lumbar-rfa 1.1.1"
    # A version no package serves is not ours to decide: no card.
    resource["questionnaire"] = resource["questionnaire"].split("|")[0] + "|9.9.9"
    response = client.post(
        "/cds-services/lumbar-rfa-screening", json=hook_request(resource), headers=bearer("dr-c")
    )
    assert response.get_json() == {"cards": []}


@pytest.mark.parametrize(
    "prefetched",
    [None, {"resourceType": "Bundle", "type": "searchset", "entry": []}, "other"],
)
def test_no_response_no_card(client: FlaskClient, prefetched: Any) -> None:
    response = client.post(
        "/cds-services/lumbar-rfa-screening", json=hook_request(prefetched), headers=bearer("dr-c")
    )
    assert response.get_json() == {"cards": []}
    without = hook_request(None)
    del without["prefetch"]
    response = client.post(
        "/cds-services/lumbar-rfa-screening", json=without, headers=bearer("dr-c")
    )
    assert response.get_json() == {"cards": []}


def test_cds_service_needs_a_clinician(client: FlaskClient) -> None:
    path = "/cds-services/lumbar-rfa-screening"
    assert client.post(path, json=hook_request(None)).status_code == 401
    assert client.post(path, json=hook_request(None), headers=bearer("portal-a")).status_code == 403


def test_cds_request_problems_are_named(
    client: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    path = "/cds-services/lumbar-rfa-screening"
    wrong_hook = {**hook_request(None), "hook": "order-sign"}
    response = client.post(path, json=wrong_hook, headers=bearer("dr-c"))
    assert response.status_code == 422 and "hook" in response.get_json()["errors"]
    del valid_answers["rf_fever"]
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    )
    response = client.post(path, json=hook_request(resource), headers=bearer("dr-c"))
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["prefetch.questionnaireResponse.rf_fever"]


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"hook": "order-sign"}, ["hook"]),
        ({"hook": None}, ["hook"]),
        ({"hookInstance": ""}, ["hookInstance"]),
        ({"hookInstance": "x" * 256}, ["hookInstance"]),
        ({"context": "Patient/1"}, ["context"]),
        ({"context": {"userId": "Practitioner/1"}}, ["context.patientId"]),
        ({"context": {"patientId": "tab\there"}}, ["context.patientId"]),
        ({"prefetch": ["x"]}, ["prefetch"]),
        ({"fhirServer": ""}, ["fhirServer"]),
        ({"fhirAuthorization": "token"}, ["fhirAuthorization"]),
        ({"fhirAuthorization": {"token_type": "Bearer"}}, ["fhirAuthorization.access_token"]),
        ({"hook": "order-sign", "hookInstance": 5}, ["hook", "hookInstance"]),
    ],
)
def test_each_unusable_hook_field_is_named(
    client: FlaskClient, change: dict[str, Any], fields: list[str]
) -> None:
    body = {**hook_request(None), **change}
    response = client.post("/cds-services/lumbar-rfa-screening", json=body, headers=bearer("dr-c"))
    assert response.status_code == 422
    assert sorted(response.get_json()["errors"]) == sorted(fields)


def test_a_hook_request_may_carry_what_the_service_does_not_read(client: FlaskClient) -> None:
    body = {
        **hook_request(None),
        "context": {"userId": "Practitioner/1", "patientId": "1", "encounterId": "E-9"},
        "fhirAuthorization": None,
        "extension": {"com.ehr.tenant": "north"},
    }
    response = client.post("/cds-services/lumbar-rfa-screening", json=body, headers=bearer("dr-c"))
    assert response.status_code == 200, response.get_json()


# --- FHIR results back to the EHR -----------------------------------------------------------

LOINC_PAIN_SEVERITY = "72514-3"


def _bundle_resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


@BOTH_DATABASES
def test_a_stored_screening_as_a_fhir_bundle(
    client: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    valid_answers["rf_cancer_history"] = True
    body = {"answers": valid_answers, "patient_ref": "MRN-000123"}
    created = client.post("/v1/screenings", json=body, headers=bearer("dr-c")).get_json()
    response = client.get(
        f"/v1/screenings/{created['id']}", headers={**bearer("dr-c"), "Accept": FHIR}
    )
    assert response.status_code == 200
    assert response.mimetype == FHIR
    assert response.headers["Vary"] == "Accept"
    bundle = response.get_json()
    FhirBundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    full_urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)

    [answers_resource] = _bundle_resources(bundle, "QuestionnaireResponse")
    answers, errors = answers_from_questionnaire_response(answers_resource, rulebook.questionnaire)
    assert errors == {} and answers == created["answers"]
    assert answers_resource["language"] == "en"
    assert answers_resource["subject"] == {"identifier": {"value": "MRN-000123"}}

    [guidance] = _bundle_resources(bundle, "GuidanceResponse")
    assert guidance["status"] == "success"
    reasons = [reason["coding"][0]["code"] for reason in guidance["reasonCode"]]
    assert reasons[0] == created["decided_by"]
    # A reason per finding and note: every matched rule but a fallback that did not decide.
    clinician = created["summary"]["clinician"]
    stated = [finding["rule"] for finding in [*clinician["findings"], *clinician["notes"]]]
    assert sorted(reasons) == sorted(stated)
    assert set(stated) <= set(created["matched_rules"])
    cited = created["summary"]["clinician"]["sources"][0]["citation"]
    assert any(cited in reason["text"] for reason in guidance["reasonCode"])
    [parameters] = _bundle_resources(bundle, "Parameters")
    assert f"urn:uuid:{guidance['outputParameters']['reference'].split(':')[-1]}" in full_urls
    values = {p["name"]: p for p in parameters["parameter"]}
    assert values["outcome"]["valueCoding"]["code"] == created["outcome"] == "see_primary_care"
    summary = created["summary"]["patient"]
    assert summary["headline"] in values["patient_summary"]["valueString"]
    assert summary["disclaimer"] in values["patient_summary"]["valueString"]

    [pain] = [
        o
        for o in _bundle_resources(bundle, "Observation")
        if o["code"]["coding"][0]
        == {
            "system": "http://loinc.org",
            "code": LOINC_PAIN_SEVERITY,
            "display": "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
        }
    ]
    assert pain["valueInteger"] == valid_answers["pain_intensity"]
    assert pain["status"] == "final"
    response_url = next(
        e["fullUrl"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "QuestionnaireResponse"
    )
    assert pain["derivedFrom"] == [{"reference": response_url}]
    # The same screening always gives the same Bundle.
    again = client.get(
        f"/v1/screenings/{created['id']}", headers={**bearer("dr-c"), "Accept": FHIR}
    )
    assert again.get_json() == bundle


def test_a_fhir_bundle_keeps_the_patient_reference_and_language(
    client: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    )
    resource.update(language="es", subject={"reference": "Patient/1288992"})
    created = fhir_post(client, "/v1/screenings", resource, who="dr-c").get_json()
    bundle = client.get(
        f"/v1/screenings/{created['id']}", headers={**bearer("dr-c"), "Accept": FHIR}
    ).get_json()
    FhirBundle.model_validate(bundle)
    [answers_resource] = _bundle_resources(bundle, "QuestionnaireResponse")
    assert answers_resource["language"] == "es"
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] != "Parameters":
            assert entry["resource"]["subject"] == {"reference": "Patient/1288992"}
    [parameters] = _bundle_resources(bundle, "Parameters")
    values = {p["name"]: p for p in parameters["parameter"]}
    assert values["patient_summary_language"]["valueCode"] == "es"
    assert created["summary"]["patient"]["headline"] in values["patient_summary"]["valueString"]


def test_the_portal_gets_its_json_view_whatever_it_accepts(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    created = client.post(
        "/v1/screenings", json={"answers": valid_answers}, headers=bearer("portal-a")
    ).get_json()
    response = client.get(
        f"/v1/screenings/{created['id']}", headers={**bearer("portal-a"), "Accept": FHIR}
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == set(created)


@pytest.mark.parametrize(
    ("query", "accept_language", "language"),
    [
        ({}, None, "es"),
        ({"lang": "en"}, None, "en"),
        ({"lang": "de"}, None, "es"),
        ({}, "en-US", "en"),
        ({}, "fr", "en"),
    ],
)
def test_the_response_language_counts_only_when_the_request_names_none(
    client: FlaskClient,
    rulebook: Rulebook,
    valid_answers: dict[str, Any],
    query: dict[str, str],
    accept_language: str | None,
    language: str,
) -> None:
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    )
    resource["language"] = "es"
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = fhir_post(client, "/v1/evaluate", resource, query_string=query, headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Language"] == language


def test_a_fhir_bundle_names_the_questionnaire_version_it_was_answered_on(
    client: FlaskClient, valid_answers: dict[str, Any]
) -> None:
    answers = {k: v for k, v in valid_answers.items() if k != "second_block_relief_percent"}
    body = {"answers": answers, "questionnaire": {"id": "lumbar-rfa-screening", "version": "1.0.0"}}
    created = client.post("/v1/screenings", json=body, headers=bearer("dr-c")).get_json()
    bundle = client.get(
        f"/v1/screenings/{created['id']}", headers={**bearer("dr-c"), "Accept": FHIR}
    ).get_json()
    [response] = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "QuestionnaireResponse"
    ]
    assert response["questionnaire"].endswith("|1.0.0")
