"""Every write route under random input (hypothesis): never a 5xx, nothing stored on refusal.

Random JSON (NUL, lone surrogates, integers past 64 bits, nesting past what the store
takes), FHIR-shaped documents with parts replaced by such values, CDS Hooks calls
and form posts go to each route that writes: evaluate, store (native and FHIR),
review (API and form), the CDS service, sign-in and sign-out. Each answer is below
500, matches openapi.yaml (the spec-checking client), and a refusal leaves the
screenings, reviews and idempotency records as they were, on both databases.

Derandomized and bounded (a fixed number of examples per route), so CI and a
developer run the same examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import Rulebook
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import RULES_DIR
from tests.support.app import TOKENS
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.examples import examples
from tests.support.spec import check_against_spec

pytestmark = BOTH_DATABASES

EXAMPLES = settings(
    max_examples=examples(60),
    deadline=None,
    derandomize=True,
    database=None,
    # The app and its database live for the whole test; each example measures its own
    # change, so sharing them across examples is intended.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WRITTEN = ("screenings", "reviews", "idempotency_records")

# Text with everything JSON can carry: NUL, control characters, lone surrogates.
text = st.text(st.characters(exclude_categories=()), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value buried under 200 to 300 levels of lists and objects."""
    value: Any = draw(scalars)
    for _ in range(draw(st.integers(200, 300))):
        value = [value] if draw(st.booleans()) else {"a": value}
    return value


anything = json_values | deep()


def counts(store: Store) -> dict[str, int]:
    """How many rows each written table holds."""
    with store.engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in WRITTEN}


def refused(response: TestResponse) -> bool:
    """A 4xx, or a page sending the browser to sign in (nothing it posted was taken)."""
    if response.status_code == 303:
        return urlsplit(response.headers["Location"]).path == "/review/login"
    return response.status_code >= 400


def check(store: Store, send: Callable[[], TestResponse]) -> TestResponse:
    """Send one request: below 500, and a refusal changes nothing that is stored."""
    before = counts(store)
    response = send()
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    if refused(response):
        assert counts(store) == before, response.status_code
    return response


def dumps(value: Any) -> str:
    """JSON as a client may send it (NaN and Infinity too; surrogates as escapes)."""
    return json.dumps(value, allow_nan=True)


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with a few of its parts (anywhere inside) replaced or added."""
    doc = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if isinstance(node, dict):
            key = draw(st.sampled_from([*node, draw(text)]) if node else text)
            node[key] = draw(anything)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(anything)
    return doc


def _rulebook() -> Rulebook:
    from screening.rules.rulebook import load_rules

    return load_rules(RULES_DIR)


QR = questionnaire_response_from_answers(base_answers(), _rulebook().questionnaire)
ENVELOPE = {"answers": base_answers(), "patient_ref": "MRN-1"}
HOOK = {
    "hook": "patient-view",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {"patientId": "123"},
    "prefetch": {"questionnaireResponse": {"resourceType": "Bundle", "entry": [{"resource": QR}]}},
}


def post(client: FlaskClient, path: str, body: str, media: str, who: str, **headers: str) -> Any:
    """POST a raw body."""
    return client.post(path, data=body, headers={**bearer(who), "Content-Type": media, **headers})


@pytest.mark.parametrize("path", ["/v1/evaluate", "/v1/screenings"])
@EXAMPLES
@given(data=st.data())
def test_native_submissions(
    client: FlaskClient, store: Store, path: str, data: st.DataObject
) -> None:
    body = data.draw(mutated(ENVELOPE) | anything, label="body")
    key = data.draw(
        st.none()
        | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)
    )
    headers = {} if key is None else {"Idempotency-Key": key}
    check(store, lambda: post(client, path, dumps(body), "application/json", "portal-a", **headers))


@pytest.mark.parametrize("path", ["/v1/evaluate", "/v1/screenings"])
@EXAMPLES
@given(data=st.data())
def test_fhir_submissions(
    client: FlaskClient, store: Store, path: str, data: st.DataObject
) -> None:
    body = data.draw(mutated(QR), label="resource")
    check(store, lambda: post(client, path, dumps(body), "application/fhir+json", "dr-c"))


@EXAMPLES
@given(data=st.data())
def test_cds_hook_calls(client: FlaskClient, store: Store, data: st.DataObject) -> None:
    body = data.draw(mutated(HOOK), label="hook request")
    check(
        store,
        lambda: post(
            client, "/cds-services/lumbar-rfa-screening", dumps(body), "application/json", "dr-c"
        ),
    )


@pytest.fixture
def screening_id(client: FlaskClient) -> str:
    """A stored screening to review."""
    response = client.post("/v1/screenings", json=ENVELOPE, headers=bearer("portal-a"))
    return str(response.get_json()["id"])


@EXAMPLES
@given(data=st.data())
def test_api_reviews(
    client: FlaskClient, store: Store, screening_id: str, data: st.DataObject
) -> None:
    body = data.draw(mutated({"note": "Seen."}) | anything, label="body")
    target = data.draw(st.sampled_from([screening_id, "0" * 32]) | text, label="id")
    path = f"/v1/screenings/{target}/review".replace("?", "%3F").replace("#", "%23")
    check(store, lambda: post(client, path, dumps(body), "application/json", "dr-c"))


def _form_client(app: Flask) -> tuple[FlaskClient, str]:
    """A browser signed in to the review pages, and its CSRF token."""
    browser = FlaskClient(app, use_cookies=True)
    page = browser.get("/review/login")
    token = _CSRF.search(page.text)
    assert token is not None
    browser.post("/review/login", data={"token": TOKENS["dr-c"], "csrf_token": token.group(1)})
    page = browser.get("/review/")
    token = _CSRF.search(page.text)
    assert token is not None
    return browser, token.group(1)


# Forms carry text as UTF-8 (no lone surrogates), with NUL as %00.
form_text = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["", "\x00", "a\x00b", "x" * 2001, "<script>", "\r\n"]
)


@EXAMPLES
@given(data=st.data())
def test_review_form_posts(
    app: Flask, store: Store, screening_id: str, data: st.DataObject
) -> None:
    browser, csrf = _form_client(app)
    fields = data.draw(
        st.dictionaries(st.sampled_from(["note", "csrf_token", "next", "extra"]), form_text),
        label="fields",
    )
    if data.draw(st.booleans(), label="with the page's CSRF token"):
        fields.setdefault("csrf_token", csrf)
    target = data.draw(st.sampled_from([screening_id, "0" * 32, "x\x00"]), label="id")
    response = check(store, lambda: browser.post(f"/review/{target}/review", data=fields))
    check_against_spec(response)


@EXAMPLES
@given(data=st.data())
def test_sign_in_and_out_posts(app: Flask, store: Store, data: st.DataObject) -> None:
    browser = FlaskClient(app, use_cookies=True)
    page = browser.get("/review/login")
    token = _CSRF.search(page.text)
    assert token is not None
    fields = data.draw(
        st.dictionaries(st.sampled_from(["token", "next", "csrf_token"]), form_text),
        label="fields",
    )
    if data.draw(st.booleans()):
        fields["csrf_token"] = token.group(1)
    if data.draw(st.booleans()):
        fields["token"] = TOKENS[data.draw(st.sampled_from(list(TOKENS)))]
    path = data.draw(st.sampled_from(["/review/login", "/review/logout"]))
    check(store, lambda: browser.post(path, data=fields))
