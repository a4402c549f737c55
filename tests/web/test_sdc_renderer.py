"""The FHIR Questionnaire in a real SDC renderer: LHC-Forms pre-fills the age from a Patient.

LHC-Forms (lforms from package.json, `make install` runs npm ci) runs in Debian's
Chromium on a page whose files Playwright serves from node_modules: nothing leaves the
machine. The EHR's side is what a SMART app hands LHC-Forms: a FHIR client whose
``patient.read()`` gives the launch-context Patient. The page's clock is fixed, so the
whole years are known exactly, birthday passed or not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import Route

from screening import PROJECT_ROOT
from tests.support.browser import chromium

LFORMS = PROJECT_ROOT / "node_modules" / "lforms" / "dist" / "lforms"
ORIGIN = "http://renderer.test"
pytestmark = pytest.mark.browser
# LHC-Forms' own loading order: zone.js, the web component, then its FHIR support.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SDC renderer</title>
<link href="/lforms/webcomponent/styles.css" rel="stylesheet"></head>
<body><div id="form"></div>
<script src="/lforms/webcomponent/assets/lib/zone.min.js"></script>
<script src="/lforms/webcomponent/lhc-forms.js"></script>
<script src="/lforms/fhir/lformsFHIRAll.min.js"></script>
</body></html>"""

# Renders the Questionnaire with pre-population, as an EHR-launched SMART app does, and
# returns the QuestionnaireResponse LHC-Forms builds and the age field's value.
RENDER = """async ([questionnaire, patient]) => {
  const requests = [];
  const client = {
    getFhirVersion: () => Promise.resolve('4.0.1'),
    request: (url) => {
      requests.push(String(url));
      return Promise.resolve({resourceType: 'Bundle', type: 'searchset', entry: []});
    },
    patient: {id: patient.id, read: () => Promise.resolve(patient)},
  };
  LForms.Util.setFHIRContext(client);
  await LForms.Util.addFormToPage(questionnaire, 'form', {prepopulate: true});
  const form = document.getElementById('form');
  return {
    response: LForms.Util.getFormFHIRData('QuestionnaireResponse', 'R4', form),
    field: document.getElementById('age_years/1/1').value,
    requests,
  };
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (skipped, or failed in CI, without it)."""
    assert (LFORMS / "webcomponent" / "lhc-forms.js").exists(), "run `make install` (npm ci)"
    with chromium() as launched:
        yield launched


def _serve(route: Route) -> None:
    """The test page and LHC-Forms' files; anything else is 404."""
    path = route.request.url.removeprefix(f"{ORIGIN}/")
    if path == "":
        route.fulfill(body=PAGE, content_type="text/html; charset=utf-8")
        return
    target = (LFORMS / path.removeprefix("lforms/")).resolve()
    if path.startswith("lforms/") and target.is_relative_to(LFORMS.resolve()) and target.is_file():
        route.fulfill(path=str(target))
        return
    route.fulfill(status=404, body="")


def _age_answer(response: dict[str, Any]) -> Any:
    """The age_years answer of a QuestionnaireResponse (its items nested in groups)."""
    for group in response.get("item", []):
        for item in group.get("item", []):
            if item["linkId"] == "age_years":
                return item.get("answer")
    return None


@pytest.fixture
def renderer(browser: Browser) -> Iterator[Page]:
    """A page with LHC-Forms loaded, its clock fixed at 2026-06-15 noon."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.clock.set_fixed_time(datetime(2026, 6, 15, 12, 0, 0))
    page.route(f"{ORIGIN}/**", _serve)
    page.goto(f"{ORIGIN}/")
    page.wait_for_function("() => window.LForms && LForms.Util && LForms.FHIR", timeout=30_000)
    yield page
    context.close()
    assert errors == []


@pytest.mark.parametrize(
    ("birth_date", "age"),
    [("1981-05-14", 45), ("1981-06-15", 45), ("1981-06-16", 44), ("2020-12-31", 5)],
)
def test_lhc_forms_prefills_the_age_from_the_patient(
    renderer: Page, client: FlaskClient, birth_date: str, age: int
) -> None:
    questionnaire = client.get("/v1/questionnaire", headers={"Accept": "application/fhir+json"})
    patient = {"resourceType": "Patient", "id": "1288992", "birthDate": birth_date}
    rendered = renderer.evaluate(RENDER, [questionnaire.get_json(), patient])
    assert rendered["field"] == str(age)
    assert _age_answer(rendered["response"]) == [{"valueInteger": age}]
    # Only the age is pre-filled; the patient answers the rest.
    answered = [
        item["linkId"]
        for group in rendered["response"].get("item", [])
        for item in group.get("item", [])
        if item.get("answer")
    ]
    assert answered == ["age_years"]


def test_without_a_patient_nothing_is_prefilled(renderer: Page, client: FlaskClient) -> None:
    questionnaire = client.get("/v1/questionnaire", headers={"Accept": "application/fhir+json"})
    patient = {"resourceType": "Patient", "id": "1288992"}
    rendered = renderer.evaluate(RENDER, [questionnaire.get_json(), patient])
    assert rendered["field"] == ""
    assert _age_answer(rendered["response"]) is None
