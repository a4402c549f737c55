"""openapi.yaml is a valid OpenAPI 3.1 document and matches the routes both ways."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from jsonschema import FormatChecker
from openapi_spec_validator import validate

from screening import PROJECT_ROOT
from screening.fhir.forms import canonical_reference
from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from screening.web.ops import openapi_document_bytes
from screening.web.schemas import PRINTABLE_PATTERN
from tests.support.app import bearer

SPEC = yaml.safe_load((PROJECT_ROOT / "openapi.yaml").read_text(encoding="utf-8"))
IGNORED_METHODS = {"HEAD", "OPTIONS"}
METHODS = {"get", "post", "put", "patch", "delete"}
# Server-rendered HTML pages for people (the clinician review pages, with their
# cookie session and CSRF forms, and the browser redirects of a SMART launch from the EHR)
# and static files are not part of the HTTP API.
UNDOCUMENTED_BLUEPRINTS = {"review", "smart"}


def test_spec_is_valid() -> None:
    validate(SPEC)


#: Redocly CLI from package.json (`make install` runs npm ci).
REDOCLY = PROJECT_ROOT / "node_modules" / ".bin" / "redocly"


def test_redocly_lint_reports_no_error() -> None:
    """Redocly's recommended rules: a description cut short by YAML is a struct error there."""
    assert REDOCLY.exists(), "run `make install` (npm ci) for Redocly CLI"
    env = {
        **os.environ,
        "REDOCLY_TELEMETRY": "off",
        "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    }
    done = subprocess.run(
        [str(REDOCLY), "lint", "openapi.yaml", "--format=json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert report["totals"]["errors"] == 0, errors
    assert done.returncode == 0, done.stderr


def _routes(app: Flask) -> set[tuple[str, str]]:
    """Every (path, method) the app serves, in OpenAPI path syntax."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.split(".")[0] in UNDOCUMENTED_BLUEPRINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - IGNORED_METHODS:
            routes.add((path, method.lower()))
    return routes


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (path, method, operation) of the spec; path items also hold ``parameters``."""
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _documented() -> set[tuple[str, str]]:
    return {(path, method) for path, method, _ in _operations()}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (one level is all the spec uses outside schemas)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return dict(target)


def test_every_route_is_documented_and_every_documented_route_exists(app: Flask) -> None:
    assert _routes(app) == _documented()


def test_every_operation_documents_its_errors() -> None:
    for path, method, operation in _operations():
        assert "405" in operation["responses"], (path, method)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                target = _resolve(response)
                assert "application/problem+json" in target["content"], (path, method, status)


def test_protected_operations_document_401_and_public_ones_do_not() -> None:
    for path, method, operation in _operations():
        security = operation.get("security", SPEC["security"])
        assert ("401" in operation["responses"]) is bool(security), (path, method)


def test_operations_that_read_a_body_document_its_errors() -> None:
    for path, method, operation in _operations():
        if "requestBody" in operation:
            for status in ("400", "413", "415", "422"):
                assert status in operation["responses"], (path, method, status)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one schema of the spec; its "#/components/..." refs resolve inside it."""
    return Draft202012Validator(
        {**schema, "components": SPEC["components"]}, format_checker=FormatChecker()
    )


def _examples(media: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if "example" in media:
        yield "example", media["example"]
    for name, example in media.get("examples", {}).items():
        yield name, _resolve(example)["value"]


def _media_with_examples() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every media type object (request and response) and parameter, with where it is."""
    for path, method, operation in _operations():
        where = f"{method.upper()} {path}"
        body = operation.get("requestBody")
        if body is not None:
            for media_type, media in _resolve(body)["content"].items():
                yield f"{where} request {media_type}", media
        for status, response in operation["responses"].items():
            for media_type, media in _resolve(response).get("content", {}).items():
                yield f"{where} {status} {media_type}", media
    for name, parameter in SPEC["components"]["parameters"].items():
        yield f"parameter {name}", parameter


@pytest.mark.parametrize(("where", "media"), list(_media_with_examples()), ids=lambda v: v)
def test_every_example_fits_its_schema(where: str, media: dict[str, Any]) -> None:
    if "schema" not in media:
        return
    validator = _validator(media["schema"])
    for name, value in _examples(media):
        errors = [error.message for error in validator.iter_errors(value)]
        assert not errors, (where, name, errors)


def test_every_error_example_has_its_status() -> None:
    for path, method, operation in _operations():
        for status, response in operation["responses"].items():
            media = _resolve(response).get("content", {}).get("application/problem+json")
            if media is None:
                continue
            for name, value in _examples(media):
                assert value["status"] == int(status), (path, method, status, name)


def test_request_examples_are_accepted(client: FlaskClient) -> None:
    """The documented example bodies are what the service accepts, not just well-formed."""
    body = SPEC["components"]["requestBodies"]["ScreeningRequest"]["content"]
    for media_type, media in body.items():
        for name, value in _examples(media):
            headers = {**bearer("dr-c"), "Content-Type": media_type}
            for path, status in (("/v1/evaluate", 200), ("/v1/screenings", 201)):
                response = client.post(path, data=json.dumps(value), headers=headers)
                assert response.status_code == status, (media_type, name, response.get_json())


def test_served_document_is_this_file(client: FlaskClient) -> None:
    response = client.get("/openapi.yaml")
    assert yaml.safe_load(response.data) == SPEC


def test_the_served_lists_are_what_the_loaded_packages_hold(
    client: FlaskClient, rulebook: Rulebook
) -> None:
    # The file lists the shipped packages' outcomes and served questionnaire versions: the
    # served document is this file byte for byte (ETag and caching rely on it).
    assert client.get("/openapi.yaml").data == (PROJECT_ROOT / "openapi.yaml").read_bytes()
    other, _ = openapi_document_bytes(
        str(PROJECT_ROOT / "openapi.yaml"), ("urgent_care", "physio_first"), ("u|1", "u|2")
    )
    schemas = yaml.safe_load(other)["components"]["schemas"]
    assert schemas["OutcomeCode"]["enum"] == ["urgent_care", "physio_first"]
    assert schemas["FhirQuestionnaireResponse"]["properties"]["questionnaire"]["enum"] == [
        "u|1",
        "u|2",
    ]


def test_a_fhir_response_names_exactly_a_canonical_the_service_takes(
    client: FlaskClient, rulebook: Rulebook, valid_answers: dict[str, Any]
) -> None:
    schema = SPEC["components"]["schemas"]["FhirQuestionnaireResponse"]
    canonicals = schema["properties"]["questionnaire"]["enum"]
    resource = questionnaire_response_from_answers(valid_answers, rulebook.questionnaire)
    headers = {**bearer("dr-c"), "Content-Type": "application/fhir+json"}
    for canonical in [*canonicals, canonicals[-1].replace("|1.2.0", "|9.9.9")]:
        response = client.post(
            "/v1/evaluate",
            data=json.dumps({**resource, "questionnaire": canonical}),
            headers=headers,
        )
        errors = response.get_json().get("errors", {})
        # Answers to 1.2.0 may not fit an earlier version; the reference itself is taken.
        assert ("questionnaire" in errors) is (canonical not in canonicals), canonical


def test_every_printable_field_has_the_services_pattern() -> None:
    patterns: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "pattern" in node and "\\x00" in node["pattern"]:
                patterns.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SPEC)
    # hookInstance, patientId, fhirServer, access_token; card, suggestion id, the Coding's three.
    assert patterns == [PRINTABLE_PATTERN] * 9


def test_descriptions_are_not_cut_by_a_comma() -> None:
    # In a YAML flow mapping an unquoted comma ends the value: the rest became a key.
    schemas = SPEC["components"]["schemas"]
    assert schemas["Problem"]["properties"]["type"] == {
        "type": "string",
        "description": "A URI naming the kind of problem, or about:blank.",
    }
    required = schemas["Item"]["properties"]["required"]
    assert set(required) == {"type", "description"}
    assert required["description"].endswith("for items with enable_when).")


@pytest.mark.parametrize(
    "items",
    [
        [{"text": "No linkId"}],
        [{"linkId": 7}],
        [{"linkId": "about_you", "item": [{"answer": [{"valueInteger": 45}]}]}],
    ],
)
def test_response_items_need_a_link_id_in_the_spec_as_in_the_service(
    client: FlaskClient, rulebook: Rulebook, items: list[dict[str, Any]]
) -> None:
    resource = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": canonical_reference(rulebook.questionnaire),
        "status": "completed",
        "item": items,
    }
    schema = SPEC["components"]["requestBodies"]["ScreeningRequest"]["content"][
        "application/fhir+json"
    ]["schema"]
    assert list(_validator(schema).iter_errors(resource))
    headers = {**bearer("dr-c"), "Content-Type": "application/fhir+json"}
    response = client.post("/v1/evaluate", data=json.dumps(resource), headers=headers)
    assert response.status_code == 422
