"""A rule package with an outcome of its own works end to end.

lumbar-rfa-physio 1.0.0 (tests/support/app.py) declares ``physio_first``, indicator
``warning``, which no shipped package has, and is the default package of questionnaire
1.1.0, not the newest default. Every place that names outcomes must take that package's:
the API and its served contract, storage, the list and its filter, triage, webhooks, the
review pages, the CDS card and ``rules evaluate``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from flask import Flask
from flask.testing import FlaskClient

from screening import extension
from screening.fhir.forms import questionnaire_response_from_answers
from tests.support.app import BOTH_DATABASES
from tests.support.app import FIFTH_LABEL
from tests.support.app import FIFTH_OUTCOME
from tests.support.app import FIFTH_PACKAGE
from tests.support.app import TOKENS
from tests.support.app import bearer
from tests.support.app import fifth_outcome_tree
from tests.support.app import make_app
from tests.support.receiver import Receiver
from tests.support.receiver import new_secret

pytestmark = BOTH_DATABASES

QUESTIONNAIRE = {"id": "lumbar-rfa-screening", "version": "1.1.0"}
PUBLIC_URL = "https://screening.example.org/"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on the loopback interface."""
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def secret() -> str:
    """The physiotherapy desk endpoint's secret."""
    return new_secret()


@pytest.fixture(scope="module")
def rules_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped packages plus lumbar-rfa-physio, made once: the tests only read it, and
    the same folder is loaded once per process."""
    return fifth_outcome_tree(tmp_path_factory.mktemp("fifth"))


@pytest.fixture
def app(database_url: str, rules_tree: Path, receiver: Receiver, secret: str) -> Iterator[Flask]:
    """The app on the shipped packages plus lumbar-rfa-physio, with an endpoint that wants
    only the fifth outcome."""
    endpoint = {
        "name": "physio-desk",
        "url": receiver.url("physio"),
        "secret": secret,
        "events": ["screening.created"],
        "outcomes": [FIFTH_OUTCOME],
    }
    with make_app(
        database_url,
        RULES_DIR=str(rules_tree),
        WEBHOOKS=json.dumps([endpoint]),
        PUBLIC_URL=PUBLIC_URL,
    ) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client of that app, checked against the contract it serves."""
    return app.test_client()


def _base() -> dict[str, Any]:
    """A complete questionnaire 1.1.0 submission that meets the discussion criteria."""
    cases = (Path(extension.__file__).parents[1] / "rules/lumbar-rfa/1.1.1/cases.yaml").read_text(
        encoding="utf-8"
    )
    return dict(yaml.safe_load(cases)["bases"]["no_findings"])


def _physio() -> dict[str, Any]:
    """The same, from someone who has tried no conservative care."""
    answers = {**_base(), "treatments_tried": ["none"]}
    del answers["treatment_duration"], answers["treatment_effect"]
    return answers


def _store(client: FlaskClient, answers: dict[str, Any], ref: str) -> dict[str, Any]:
    body = {"questionnaire": QUESTIONNAIRE, "answers": answers, "patient_ref": ref}
    response = client.post("/v1/screenings", json=body, headers=bearer("portal-a"))
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def test_the_fifth_outcome_is_decided_and_described_by_its_own_package(
    client: FlaskClient,
) -> None:
    body = {"questionnaire": QUESTIONNAIRE, "answers": _physio()}
    result = client.post("/v1/evaluate", json=body, headers=bearer("dr-c")).get_json()
    assert result["outcome"] == FIFTH_OUTCOME
    assert (result["ruleset"]["id"], result["ruleset"]["version"]) == FIFTH_PACKAGE
    spanish = client.post(
        "/v1/evaluate", json=body, headers={**bearer("portal-a"), "Accept-Language": "es"}
    )
    assert spanish.get_json()["summary"]["patient"]["headline"] == (
        "Por favor, pruebe primero la fisioterapia."
    )
    # The served contract admits it, so a client generated from it reads the outcome.
    served = yaml.safe_load(client.get("/openapi.yaml").data)
    assert FIFTH_OUTCOME in served["components"]["schemas"]["OutcomeCode"]["enum"]


def test_stored_listed_filtered_and_triaged_by_its_indicator(client: FlaskClient) -> None:
    discuss = _store(client, _base(), "MRN-1")
    physio = _store(client, _physio(), "MRN-2")
    urgent = _store(client, {**_base(), "rf_fever": True}, "MRN-3")
    assert (discuss["outcome"], physio["outcome"], urgent["outcome"]) == (
        "discuss_with_specialist",
        FIFTH_OUTCOME,
        "urgent_care",
    )
    stored = client.get(f"/v1/screenings/{physio['id']}", headers=bearer("dr-c")).get_json()
    assert stored["outcome"] == FIFTH_OUTCOME

    def listed(query: str) -> list[str]:
        response = client.get(f"/v1/screenings?{query}", headers=bearer("dr-c"))
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()["items"]]

    assert listed(f"outcome={FIFTH_OUTCOME}") == [physio["id"]]
    # A warning: after the urgent one, before the older one that needs no action.
    assert listed("sort=triage") == [urgent["id"], physio["id"], discuss["id"]]
    assert listed(f"sort=triage&outcome={FIFTH_OUTCOME}") == [physio["id"]]
    refused = client.get("/v1/screenings?outcome=sunshine", headers=bearer("dr-c"))
    assert refused.status_code == 422
    assert FIFTH_OUTCOME in refused.get_json()["errors"]["outcome"][0]


def test_an_endpoint_filtered_on_it_gets_only_its_screenings(
    app: Flask, client: FlaskClient, receiver: Receiver, secret: str
) -> None:
    _store(client, _base(), "MRN-1")
    physio = _store(client, _physio(), "MRN-2")
    with app.app_context():
        deliverer = extension.notifications().deliverer(lease_seconds=30)
    with requests.Session() as session:
        while deliverer.deliver_due(session):
            pass
    events = [received.verify(secret) for received in receiver.received("physio")]
    assert [(e["data"]["id"], e["data"]["outcome"]) for e in events] == [
        (physio["id"], FIFTH_OUTCOME)
    ]


def test_the_pages_show_it_in_its_packages_words(app: Flask) -> None:
    client = FlaskClient(app, use_cookies=True)
    physio = _store(client, _physio(), "MRN-2")["id"]
    login = client.get("/review/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert csrf is not None
    client.post("/review/login", data={"token": TOKENS["dr-c"], "csrf_token": csrf.group(1)})
    page = client.get(f"/review/?outcome={FIFTH_OUTCOME}")
    assert page.status_code == 200
    assert f'<option value="{FIFTH_OUTCOME}" selected>{FIFTH_LABEL}</option>' in page.text
    assert f'href="/review/{physio}"' in page.text
    assert "screening screening-warning" in page.text
    assert FIFTH_LABEL in client.get(f"/review/{physio}").text


def test_a_card_for_a_response_it_decides(client: FlaskClient, app: Flask) -> None:
    with app.app_context():
        questionnaire = extension.rulebook().for_questionnaire("1.1.0").questionnaire
    resource = questionnaire_response_from_answers(_physio(), questionnaire)
    hook = {
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "hook": "patient-view",
        "context": {"userId": "Practitioner/1", "patientId": "1288992"},
        "prefetch": {"questionnaireResponse": resource},
    }
    response = client.post("/cds-services/lumbar-rfa-screening", json=hook, headers=bearer("dr-c"))
    (card,) = response.get_json()["cards"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith(FIFTH_LABEL)
    assert card["source"]["label"] == "Screening rules lumbar-rfa-physio 1.0.0"


def test_the_command_line_evaluates_it(app: Flask) -> None:
    runner = app.test_cli_runner()
    for options in (["--questionnaire", "1.1.0"], ["--ruleset", "lumbar-rfa-physio"]):
        result = runner.invoke(
            args=["rules", "evaluate", *options, "-"], input=json.dumps(_physio())
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["outcome"] == FIFTH_OUTCOME
