"""Property-based tests of every operation in openapi.yaml against the app (schemathesis).

Schemathesis generates requests from the spec (its examples, boundary values,
random valid and invalid data), sends them to the Flask app in-process (WSGI, no
network) on a fresh migrated SQLite database, and checks each response: no 5xx;
a status code, content type, headers and body that the spec documents for the
operation; invalid data refused; no answer without a token where one is needed;
405 with Allow for an undocumented method. A response the spec does not describe
fails here, as does a spec that promises what the service does not do.

Bounded for a 2-core machine (about 30 s): a fixed number of examples per
operation and a derandomized run, so the same examples run in CI and locally.
"""

from __future__ import annotations

import weakref
from typing import Any

import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance
from schemathesis.specs.openapi.checks import ignored_auth
from schemathesis.specs.openapi.checks import negative_data_rejection
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.checks import response_headers_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.specs.openapi.checks import status_code_conformance
from schemathesis.specs.openapi.checks import unsupported_method

from tests.support.app import bearer
from tests.support.spec import OPENAPI_PATH

#: Random examples per operation (the examples and coverage phases add their own).
MAX_EXAMPLES = 200

CONFIG_VALUES: dict[str, Any] = {
    # Requests go to the app in-process (WSGI); the host only fills in URLs and
    # is unresolvable on purpose, so nothing can leave the machine.
    "base-url": "http://screening.invalid",
    "generation": {
        "max-examples": MAX_EXAMPLES,
        # The same examples on every run: CI fails only on a change, never by chance.
        "deterministic": True,
        "database": "none",
        # The tests send a real token with every request (ignored_auth checks the
        # requests without one), so generated Authorization values would only be
        # overridden; and unknown query parameters are ignored by design.
        "with-security-parameters": False,
        "allow-extra-parameters": False,
    },
}
CONFIG = schemathesis.Config.from_dict(CONFIG_VALUES)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]


schema = schemathesis.openapi.from_path(OPENAPI_PATH, config=CONFIG)
_COMPONENTS = schema.raw_schema["components"]

#: What the portal may call (api-v1.md); the clinician-only routes answer it 403.
PORTAL_OPERATIONS = [
    "getHealthz",
    "getReadyz",
    "getOpenapi",
    "getQuestionnaire",
    "getRuleset",
    "getCdsServices",
    "evaluate",
    "createScreening",
    "getScreening",
]


# One app and database per operation, shared by its examples on purpose: the
# screenings that earlier examples create are there for later ones to list and read.
SHARED_APP = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


#: The spec's example screening id: the examples phase sends it, and it is swapped
#: for a stored screening's id so that reads and reviews of real screenings are
#: checked too, not only 404s for generated ids.
EXAMPLE_ID = _COMPONENTS["parameters"]["ScreeningId"]["example"]
_EXAMPLE_BODY = _COMPONENTS["requestBodies"]["ScreeningRequest"]["content"]["application/json"][
    "examples"
]["complete"]["value"]
_STORED: weakref.WeakKeyDictionary[Flask, dict[str, str]] = weakref.WeakKeyDictionary()


def _stored_screening(app: Flask, who: str) -> str:
    """The id of a screening that ``who`` created in ``app``, stored on first use."""
    ids = _STORED.setdefault(app, {})
    if who not in ids:
        client = FlaskClient(app)
        response = client.post("/v1/screenings", json=_EXAMPLE_BODY, headers=bearer(who))
        assert response.status_code == 201, response.get_json()
        ids[who] = response.get_json()["id"]
    return ids[who]


def _call(case: Case[Any], app: Flask, who: str) -> Any:
    """Send ``case`` to ``app`` with ``who``'s token and run every check on the answer."""
    if case.path_parameters and case.path_parameters.get("screening_id") == EXAMPLE_ID:
        case.path_parameters["screening_id"] = _stored_screening(app, who)
    # Checks that send a request of their own (ignored_auth) use the schema's
    # transport: point it at this test's app too.
    case.operation.schema.app = app
    return case.call_and_validate(app=app, headers=bearer(who), checks=CHECKS)


@schema.parametrize()
@SHARED_APP
def test_every_operation_as_clinician(case: Case[Any], app: Flask) -> None:
    """A clinician may call every operation; every answer is one the spec documents."""
    _call(case, app, "dr-c")


#: The CDS service answers EHRs, whose hook requests follow CDS Hooks: every request the
#: schema admits is taken (elsewhere a body may be well formed yet answer a question
#: wrongly, a 422, or carry a number past what the JSON parser holds).
CDS_OPERATIONS = ["callCdsService"]


def _within_body_limits(value: Any, depth: int = 0) -> bool:
    """Whether a JSON value nests at most 254 levels and holds whole numbers only from
    -2^63 to 2^64 - 1 (screening/web/bodies.py)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return depth < 254 and all(_within_body_limits(item, depth + 1) for item in items)
    return True


CDS_CONFIG = schemathesis.Config.from_dict(
    {
        **CONFIG_VALUES,
        "generation": {
            **CONFIG_VALUES["generation"],
            # Every body is refused with a string holding NUL or an unpaired surrogate,
            # wherever it is (openapi.yaml says so; tests/web/test_hostile_input.py).
            "allow-x00": False,
            "codec": "utf-8",
        },
        # A request the schema admits may still be answered 412: the FHIR data was
        # neither prefetched nor fetchable (CDS Hooks 2.0).
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "412", "429"]
            }
        },
    }
)
cds_schema = schemathesis.openapi.from_path(OPENAPI_PATH, config=CDS_CONFIG)


@cds_schema.include(operation_id=CDS_OPERATIONS).parametrize()
@SHARED_APP
def test_every_cds_hook_request_the_schema_admits_is_taken(case: Case[Any], app: Flask) -> None:
    """No refusal of a request the contract says is well formed (within the limits every
    body has, which the 422's description states and no schema can)."""
    assume(_within_body_limits(case.body))
    case.operation.schema.app = app
    case.call_and_validate(
        app=app, headers=bearer("dr-c"), checks=[*CHECKS, positive_data_acceptance]
    )


@schema.include(operation_id=PORTAL_OPERATIONS).parametrize()
@SHARED_APP
def test_portal_operations_as_portal(case: Case[Any], app: Flask) -> None:
    """The portal's operations, with the portal's view of screenings."""
    _call(case, app, "portal-a")
