"""The review worklist: ``sort=triage`` on the API and the review list, cursor paging in
both orders, ``review.due_at`` and ``review.overdue``, overdue marks on the pages and the
overdue metrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from screening.services.keys import token_digest
from screening.storage.store import Store
from screening.storage.tables import screenings
from tests.support.app import BOTH_DATABASES
from tests.support.app import TOKENS
from tests.support.app import app_store
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app

pytestmark = BOTH_DATABASES

METRICS_TOKEN = "metrics-token-for-triage"
URGENT = {"rf_fever": True}
SEE_DOCTOR = {"rf_cancer_history": True}
CONSERVATIVE = {"pain_intensity": 3}
SPECIALIST: dict[str, Any] = {}


@pytest.fixture
def app(database_url: str) -> Iterator[Flask]:
    """The app with a 45-minute review time for urgent screenings and a metrics token."""
    with make_app(
        database_url, URGENT_REVIEW_MINUTES="45", METRICS_KEY=token_digest(METRICS_TOKEN)
    ) as app:
        yield app


def _submit(client: FlaskClient, changes: dict[str, Any], minutes_ago: int, store: Store) -> str:
    """Store a screening, then move its creation ``minutes_ago`` into the past."""
    response = client.post(
        "/v1/screenings",
        json={"answers": {**base_answers(), **changes}, "patient_ref": "MRN-9"},
        headers=bearer("portal-a"),
    )
    assert response.status_code == 201
    screening_id = str(response.get_json()["id"])
    with store.engine.begin() as conn:
        conn.execute(
            screenings.update()
            .where(screenings.c.id == screening_id)
            .values(created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago))
        )
    return screening_id


@pytest.fixture
def seeded(app: Flask) -> dict[str, str]:
    """Screenings of every band at different ages, some reviewed; name -> id."""
    client = app.test_client()
    store = app_store(app)
    ids = {
        "urgent_new": _submit(client, URGENT, 5, store),
        "urgent_old": _submit(client, URGENT, 50, store),
        "urgent_reviewed": _submit(client, URGENT, 90, store),
        "doctor_new": _submit(client, SEE_DOCTOR, 10, store),
        "doctor_old": _submit(client, SEE_DOCTOR, 70, store),
        "rest_new": _submit(client, SPECIALIST, 1, store),
        "rest_old": _submit(client, CONSERVATIVE, 200, store),
        "doctor_reviewed": _submit(client, SEE_DOCTOR, 100, store),
    }
    for name in ("urgent_reviewed", "doctor_reviewed"):
        answer = client.post(f"/v1/screenings/{ids[name]}/review", json={}, headers=bearer("dr-c"))
        assert answer.status_code == 200
    return ids


TRIAGE_ORDER = [
    "urgent_old",
    "urgent_new",
    "doctor_old",
    "doctor_new",
    "rest_old",
    "doctor_reviewed",
    "urgent_reviewed",
    "rest_new",
]
NEWEST_ORDER = [
    "rest_new",
    "urgent_new",
    "doctor_new",
    "urgent_old",
    "doctor_old",
    "urgent_reviewed",
    "doctor_reviewed",
    "rest_old",
]


def _pages(client: FlaskClient, query: str) -> list[list[dict[str, Any]]]:
    """Every page of the list for ``query``, following next_cursor."""
    pages = []
    url = f"/v1/screenings?{query}"
    while True:
        response = client.get(url, headers=bearer("dr-c"))
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        pages.append(body["items"])
        if body["next_cursor"] is None:
            return pages
        url = f"/v1/screenings?{query}&cursor={body['next_cursor']}"


def _names(ids: dict[str, str], items: list[dict[str, Any]]) -> list[str]:
    by_id = {v: k for k, v in ids.items()}
    return [by_id[item["id"]] for item in items]


@pytest.mark.parametrize("limit", [2, 3, 100])
def test_triage_puts_pending_urgent_then_see_doctor_first_oldest_first_in_pages(
    client: FlaskClient, seeded: dict[str, str], limit: int
) -> None:
    pages = _pages(client, f"sort=triage&limit={limit}")
    assert _names(seeded, [item for page in pages for item in page]) == TRIAGE_ORDER
    assert len(pages) == -(-len(TRIAGE_ORDER) // limit)


@pytest.mark.parametrize("query", ["limit=3", "sort=newest&limit=3", "limit=100"])
def test_the_default_order_stays_newest_first_in_pages(
    client: FlaskClient, seeded: dict[str, str], query: str
) -> None:
    pages = _pages(client, query)
    assert _names(seeded, [item for page in pages for item in page]) == NEWEST_ORDER


def test_triage_keeps_the_filters(client: FlaskClient, seeded: dict[str, str]) -> None:
    pages = _pages(client, "sort=triage&review_status=pending&limit=2")
    assert _names(seeded, [i for p in pages for i in p]) == [
        n for n in TRIAGE_ORDER if "reviewed" not in n
    ]
    pages = _pages(client, "sort=triage&outcome=urgent_care")
    assert _names(seeded, pages[0]) == ["urgent_old", "urgent_new", "urgent_reviewed"]


def test_a_cursor_belongs_to_its_order_and_a_bad_sort_is_named(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    newest = client.get("/v1/screenings?limit=2", headers=bearer("dr-c")).get_json()
    triage = client.get("/v1/screenings?limit=2&sort=triage", headers=bearer("dr-c")).get_json()
    for query in (
        f"sort=triage&cursor={newest['next_cursor']}",
        f"cursor={triage['next_cursor']}",
    ):
        response = client.get(f"/v1/screenings?{query}", headers=bearer("dr-c"))
        assert response.status_code == 422
        assert list(response.get_json()["errors"]) == ["cursor"]
    response = client.get("/v1/screenings?sort=oldest", headers=bearer("dr-c"))
    assert response.status_code == 422
    assert response.get_json()["errors"] == {"sort": ["Must be one of: newest, triage."]}
    assert "oldest" not in response.get_data(as_text=True).replace("Must be one of", "")


def test_urgent_screenings_carry_due_at_and_overdue(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    def review(name: str) -> dict[str, Any]:
        response = client.get(f"/v1/screenings/{seeded[name]}", headers=bearer("dr-c"))
        return dict(response.get_json()["review"])

    def created(name: str) -> datetime:
        response = client.get(f"/v1/screenings/{seeded[name]}", headers=bearer("dr-c"))
        return datetime.fromisoformat(response.get_json()["created_at"].replace("Z", "+00:00"))

    for name, overdue in (("urgent_new", False), ("urgent_old", True), ("urgent_reviewed", False)):
        got = review(name)
        due = datetime.fromisoformat(got["due_at"].replace("Z", "+00:00"))
        assert due == created(name) + timedelta(minutes=45), name
        assert got["overdue"] is overdue, name
    for name in ("doctor_old", "rest_old"):
        assert (review(name)["due_at"], review(name)["overdue"]) == (None, False)
    items = {i["id"]: i for i in _pages(client, "limit=100")[0]}
    assert items[seeded["urgent_old"]]["review_overdue"] is True
    assert items[seeded["urgent_new"]]["review_overdue"] is False
    assert items[seeded["urgent_new"]]["review_due_at"] is not None
    assert items[seeded["doctor_old"]]["review_due_at"] is None
    # The portal's view stays exactly the patient view.
    portal = client.get(f"/v1/screenings/{seeded['urgent_old']}", headers=bearer("portal-a"))
    assert "review" not in portal.get_json()


def test_the_metrics_count_overdue_reviews(client: FlaskClient, seeded: dict[str, str]) -> None:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert "screening_overdue_reviews 1.0" in text
    # Without endpoints no event waits.
    assert "screening_webhook_oldest_pending_age_seconds 0.0" in text
    assert "screening_webhook_failed_deliveries 0.0" in text


# --- the review pages --------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ROW = re.compile(r'<li class="screening .*?</li>', re.S)


@pytest.fixture
def browser_client(app: Flask) -> FlaskClient:
    """A client with cookies, signed in as the clinician."""
    client = FlaskClient(app, use_cookies=True)
    match = _CSRF.search(client.get("/review/login").text)
    assert match is not None
    signed = client.post(
        "/review/login", data={"token": TOKENS["dr-c"], "csrf_token": match.group(1)}
    )
    assert signed.status_code == 303
    return client


def test_the_review_list_in_triage_order_marks_the_overdue_one_by_word_and_icon(
    browser_client: FlaskClient, seeded: dict[str, str]
) -> None:
    page = browser_client.get("/review/?sort=triage")
    assert page.status_code == 200
    rows = _ROW.findall(page.text)
    order = [next(n for n, i in seeded.items() if f'/review/{i}"' in row) for row in rows]
    assert order == TRIAGE_ORDER
    overdue = [row for row in rows if "badge-overdue" in row]
    assert len(overdue) == 1 and f"/review/{seeded['urgent_old']}" in overdue[0]
    assert "Overdue</span>" in overdue[0] and '<svg class="icon"' in overdue[0]
    assert "Review due" in overdue[0] and "overdue</span>" in overdue[0]
    assert '<option value="triage" selected>' in page.text
    assert "Triage order" in page.text
    # Paging keeps the order.
    first = browser_client.get("/review/?sort=triage&limit=3")
    next_link = re.search(r'href="([^"]+)" rel="next">Next page', first.text)
    assert next_link is not None and "sort=triage" in next_link.group(1)
    second = browser_client.get(next_link.group(1).replace("&amp;", "&"))
    ids = [seeded[n] for n in TRIAGE_ORDER[3:6]]
    assert [i for i in ids if f'/review/{i}"' in second.text] == ids
    # The default stays newest first.
    default = browser_client.get("/review/")
    assert "Newest first." in default.text and "badge-overdue" in default.text


def test_the_detail_page_says_a_review_is_overdue(
    browser_client: FlaskClient, seeded: dict[str, str]
) -> None:
    late = browser_client.get(f"/review/{seeded['urgent_old']}")
    assert "<title>Overdue: Urgent:" in late.text
    assert "<strong>Overdue:</strong> this urgent screening was due for review by" in late.text
    assert "badge-overdue" in late.text
    on_time = browser_client.get(f"/review/{seeded['urgent_new']}")
    assert "Review due" in on_time.text and "badge-overdue" not in on_time.text
    plain = browser_client.get(f"/review/{seeded['doctor_old']}")
    assert "Review due" not in plain.text
