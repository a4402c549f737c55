"""The clinician review pages through Flask's test client: sign-in, CSRF, escaping,
headers, audit and redirects. The browser tests (test_review_browser.py) cover the rest."""

from __future__ import annotations

import dataclasses
import html
import re
import shutil
import time
from dataclasses import replace
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import itsdangerous.timed
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from werkzeug.test import TestResponse

from screening import StartupError
from screening import create_app
from screening import extension
from screening.rules.results import Finding
from screening.rules.rulebook import Rulebook
from screening.services.keys import Authenticator
from screening.services.keys import parse_api_keys
from screening.services.keys import token_digest
from screening.storage import sessions as store_module
from screening.storage.store import Store
from screening.storage.tables import review_sessions
from tests.support.app import API_KEYS
from tests.support.app import BOTH_DATABASES
from tests.support.app import RULES_ROOT
from tests.support.app import SECRET_KEY
from tests.support.app import TOKENS
from tests.support.app import app_store
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.app import shadow_tree

Q = "lumbar-rfa-screening"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ROW_LINK = re.compile(r'<h2 class="screening-title">.*?href="/review/([0-9a-f]+)"', re.S)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A plain client with cookies.

    The pages are HTML, outside openapi.yaml, and the API calls here only set up
    data; test_screenings_api checks the API's responses against the spec.
    """
    return FlaskClient(app, use_cookies=True)


def _csrf(response: TestResponse) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(response.text)
    assert match is not None, "the page has no form with a CSRF token"
    return match.group(1)


def _sign_in(client: FlaskClient, name: str = "dr-c") -> TestResponse:
    """Sign in through the form; return the answer to the post."""
    token = _csrf(client.get("/review/login"))
    return client.post("/review/login", data={"token": TOKENS[name], "csrf_token": token})


def _submit(client: FlaskClient, changes: dict[str, Any] | None = None, ref: str = "MRN-1") -> str:
    """Store a screening through the portal API; return its id."""
    answers = {**base_answers(), **(changes or {})}
    response = client.post(
        "/v1/screenings", json={"answers": answers, "patient_ref": ref}, headers=bearer("portal-a")
    )
    assert response.status_code == 201
    return str(response.get_json()["id"])


def _urgent(client: FlaskClient) -> str:
    """Store a screening the rules send to urgent care; return its id."""
    return _submit(client, {"rf_fever": True}, "MRN-URGENT")


def _history(client: FlaskClient, screening_id: str) -> dict[str, Any]:
    """The screening's review status and history, read through the API."""
    response = client.get(f"/v1/screenings/{screening_id}", headers=bearer("dr-c"))
    review = response.get_json()["review"]
    return {"status": review["status"], "history": review["history"]}


def _review(client: FlaskClient, screening_id: str, note: str, **extra: str) -> TestResponse:
    """Post the detail page's review form with a fresh CSRF token (unless given)."""
    data = {"note": note, "csrf_token": _csrf(client.get(f"/review/{screening_id}")), **extra}
    return client.post(f"/review/{screening_id}/review", data=data)


def _session_rows(app: Flask) -> list[dict[str, Any]]:
    """The review sessions the database holds."""
    with app_store(app).engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(review_sessions))]


def _login_target(response: TestResponse) -> str | None:
    """The ``next`` of a redirect to the sign-in page (fails for any other answer)."""
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert location.path == "/review/login"
    return parse_qs(location.query).get("next", [None])[0]


# --- signing in and out ---------------------------------------------------------------


def test_pages_without_a_session_send_to_sign_in_and_back(client: FlaskClient) -> None:
    assert _login_target(client.get("/review/")) == "/review/"
    assert _login_target(client.get("/review/abc")) == "/review/abc"
    ruleset_page = "/review/rulesets/lumbar-rfa/1.1.0"
    assert _login_target(client.get(ruleset_page)) == ruleset_page
    assert _login_target(client.get("/review/?outcome=urgent_care")) == (
        "/review/?outcome=urgent_care"
    )
    token = _csrf(client.get("/review/login?next=/review/abc"))
    response = client.post(
        "/review/login",
        data={"token": TOKENS["dr-c"], "csrf_token": token, "next": "/review/abc"},
    )
    assert response.headers["Location"] == "/review/abc"


@pytest.mark.parametrize(
    "target",
    [
        "https://elsewhere.example/",
        "//elsewhere.example/review/",
        "/review/\\elsewhere.example",
        "/review/\r\nSet-Cookie: a=b",
        "/v1/screenings",
    ],
)
def test_sign_in_only_returns_to_review_pages(client: FlaskClient, target: str) -> None:
    token = _csrf(client.get("/review/login"))
    response = client.post(
        "/review/login", data={"token": TOKENS["dr-c"], "csrf_token": token, "next": target}
    )
    assert response.headers["Location"] == "/review/"


def test_the_login_page_asks_for_an_access_token(client: FlaskClient) -> None:
    page = client.get("/review/login")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert '<label for="token">Access token</label>' in page.text
    assert re.search(r'<input id="token" name="token" type="password"', page.text)
    assert '<button type="submit" class="button">Sign in</button>' in page.text
    assert (
        "you are signed out after 30 minutes without activity, and 8 hours after signing in"
        in page.text
    )


def test_a_clinician_signs_in_with_a_cookie_that_holds_no_token(
    app: Flask, client: FlaskClient
) -> None:
    response = _sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/review/"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Expires=" in cookie
    value = cookie.split(";", 1)[0].removeprefix("session=")
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    data = serializer.loads(value)
    # A random session token, and nothing of the key: not its token, hash or name.
    assert set(data) == {"_permanent", "review_session"}
    stored = repr(data)
    assert TOKENS["dr-c"] not in stored
    assert token_digest(TOKENS["dr-c"]) not in stored
    assert "dr-c" not in stored
    # The database keeps the session token's hash, never the token itself.
    rows = _session_rows(app)
    assert [row["key_name"] for row in rows] == ["dr-c"]
    assert rows[0]["token_hash"] == token_digest(data["review_session"])
    assert data["review_session"] not in repr(rows)
    assert client.get("/review/").status_code == 200


def test_cookies_are_secure_unless_testing_debugging_or_told_otherwise(
    database_url: str,
) -> None:
    settings = {"DATABASE_URL": database_url, "API_KEYS": API_KEYS, "SECRET_KEY": SECRET_KEY}
    production = create_app({**settings, "RATE_LIMIT": ""})
    assert production.config["SESSION_COOKIE_SECURE"] is True
    response = _sign_in(FlaskClient(production, use_cookies=True))
    assert "Secure" in response.headers["Set-Cookie"]
    local = create_app({**settings, "RATE_LIMIT": "", "REVIEW_INSECURE_COOKIES": True})
    assert local.config["SESSION_COOKIE_SECURE"] is False
    for made in (production, local):
        app_store(made).engine.dispose()


def test_a_portal_token_is_refused_clearly(client: FlaskClient) -> None:
    response = _sign_in(client, "portal-a")
    assert response.status_code == 403
    assert "This is a patient portal token. Only clinician tokens can sign in here." in (
        response.text
    )
    assert 'role="alert"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert _login_target(client.get("/review/")) == "/review/"


def test_a_refused_token_sign_in_is_audited_by_the_keys_name(
    client: FlaskClient, store: Store
) -> None:
    """identity-v1.md: refusals are audited; a token no key has is ``key:unknown``."""
    _sign_in(client, "portal-a")
    csrf = _csrf(client.get("/review/login"))
    client.post("/review/login", data={"token": "not-a-key-of-ours", "csrf_token": csrf})
    refusals = [e["actor"] for e in store.audit.entries() if e["action"] == "sign_in_refused"]
    assert refusals == ["key:portal-a", "key:unknown"]
    # The token itself is never what the audit log records.
    assert "not-a-key-of-ours" not in repr(store.audit.entries())


@pytest.mark.parametrize("token", ["", "   ", "not-a-token"])
def test_an_empty_or_unknown_token_is_refused(client: FlaskClient, token: str) -> None:
    csrf = _csrf(client.get("/review/login"))
    response = client.post("/review/login", data={"token": token, "csrf_token": csrf})
    assert response.status_code == 422
    assert 'role="alert"' in response.text
    assert _login_target(client.get("/review/")) == "/review/"


@pytest.mark.parametrize("csrf", [None, "forged"])
def test_signing_in_needs_the_forms_csrf_token(client: FlaskClient, csrf: str | None) -> None:
    client.get("/review/login")
    data = {"token": TOKENS["dr-c"]}
    if csrf is not None:
        data["csrf_token"] = csrf
    response = client.post("/review/login", data=data)
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "nothing was saved" in response.text
    assert _login_target(client.get("/review/")) == "/review/"


def test_signing_out_ends_the_session(client: FlaskClient, store: Store) -> None:
    _sign_in(client)
    page = client.get("/review/")
    assert client.post("/review/logout").status_code == 400
    assert client.get("/review/").status_code == 200
    response = client.post("/review/logout", data={"csrf_token": _csrf(page)})
    assert _login_target(response) is None
    assert "You are signed out." in client.get("/review/login").text
    assert _login_target(client.get("/review/")) == "/review/"
    assert [(e["actor"], e["action"]) for e in store.audit.entries()] == [
        ("key:dr-c", "sign_in"),
        ("key:dr-c", "list"),
        ("key:dr-c", "list"),
        ("key:dr-c", "sign_out"),
    ]


@BOTH_DATABASES
def test_a_cookie_copied_before_signing_out_is_refused_after(
    app: Flask, client: FlaskClient, store: Store
) -> None:
    screening_id = _urgent(client)
    _sign_in(client)
    detail = client.get(f"/review/{screening_id}")
    assert detail.status_code == 200
    cookie = client.get_cookie("session")
    assert cookie is not None
    copied, csrf = cookie.value, _csrf(detail)
    response = client.post("/review/logout", data={"csrf_token": csrf})
    assert _login_target(response) is None
    assert _session_rows(app) == []
    before = store.audit.entries()

    # Someone who kept a copy of the cookie (and of a form's CSRF token) gets nothing.
    thief = FlaskClient(app, use_cookies=True)
    thief.set_cookie("session", copied)
    assert _login_target(thief.get("/review/")) == "/review/"
    thief.set_cookie("session", copied)
    assert _login_target(thief.get(f"/review/{screening_id}")) == f"/review/{screening_id}"
    thief.set_cookie("session", copied)
    response = thief.post(
        f"/review/{screening_id}/review", data={"note": "not me", "csrf_token": csrf}
    )
    assert _login_target(response) is None
    thief.set_cookie("session", copied)
    assert _login_target(thief.post("/review/logout", data={"csrf_token": csrf})) is None
    assert _history(client, screening_id) == {"status": "pending", "history": []}
    # Nothing was listed, read or recorded for the copied cookie (the API read above is
    # the only new entry).
    after = store.audit.entries()[len(before) :]
    assert [(e["actor"], e["action"]) for e in after] == [("key:dr-c", "read")]


def _replace_keys(app: Flask, entries: list[str]) -> None:
    """Configure other API keys, as a restart with new settings would."""
    services = extension.of(app)
    authenticator = Authenticator(parse_api_keys(entries))
    extension.init_app(app, dataclasses.replace(services, authenticator=authenticator))


def test_removing_or_rotating_a_key_signs_its_clinician_out(
    app: Flask, client: FlaskClient
) -> None:
    others = [entry for entry in API_KEYS.split(",") if not entry.startswith("dr-c:")]
    _sign_in(client)
    _replace_keys(app, others)
    assert _login_target(client.get("/review/")) == "/review/"

    _replace_keys(app, API_KEYS.split(","))
    _sign_in(client)
    assert client.get("/review/").status_code == 200
    # Same name, new token: the old sign-in must not survive the rotation.
    _replace_keys(app, [*others, f"dr-c:clinician:{token_digest('a-new-token')}"])
    assert _login_target(client.get("/review/")) == "/review/"

    # A key that is now a portal key can't use the pages either.
    _replace_keys(app, API_KEYS.split(","))
    _sign_in(client)
    _replace_keys(app, [*others, f"dr-c:portal:{token_digest(TOKENS['dr-c'])}"])
    assert _login_target(client.get("/review/")) == "/review/"


@BOTH_DATABASES
def test_a_session_refused_after_a_key_change_stays_ended(app: Flask, client: FlaskClient) -> None:
    others = [entry for entry in API_KEYS.split(",") if not entry.startswith("dr-c:")]
    _sign_in(client)
    cookie = client.get_cookie("session")
    assert cookie is not None
    copied = cookie.value
    _replace_keys(app, [*others, f"dr-c:clinician:{token_digest('a-new-token')}"])
    assert _login_target(client.get("/review/")) == "/review/"
    assert _session_rows(app) == []
    # Rotating back does not bring the old session back: it was ended, not paused.
    _replace_keys(app, API_KEYS.split(","))
    thief = FlaskClient(app, use_cookies=True)
    thief.set_cookie("session", copied)
    assert _login_target(thief.get("/review/")) == "/review/"


def test_a_new_secret_key_ends_every_session(database_url: str) -> None:
    with make_app(database_url) as app:
        client = FlaskClient(app, use_cookies=True)
        _sign_in(client)
        cookie = client.get_cookie("session")
        assert cookie is not None
        copied = cookie.value
    # The same session token, signed with a new secret, as a forger who knows it could.
    with make_app(database_url, SECRET_KEY="another-secret-key-0123456789abcdef") as other:
        serializer = other.session_interface.get_signing_serializer(other)  # type: ignore[attr-defined]
        first = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        forged = serializer.dumps(first.loads(copied))
        thief = FlaskClient(other, use_cookies=True)
        thief.set_cookie("session", forged)
        assert _login_target(thief.get("/review/")) == "/review/"
        assert _session_rows(other) == []


class _Clock:
    """Moves time on for the cookie's signature and for the database's session times."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        real_time, real_now = time.time, store_module._utcnow
        # itsdangerous checks the cookie's timestamp; the store stamps and checks sessions.
        monkeypatch.setattr(itsdangerous.timed, "time", self)
        monkeypatch.setattr(
            store_module, "_utcnow", lambda: real_now() + timedelta(seconds=self.offset)
        )
        self._real_time = real_time

    def time(self) -> float:
        """Real time, moved on by ``offset`` seconds."""
        return self._real_time() + self.offset

    def wait(self, minutes: float) -> None:
        """Let ``minutes`` pass."""
        self.offset += minutes * 60


def _keep_using(client: FlaskClient, clock: _Clock, minutes: list[float]) -> None:
    """Open the list after each of ``minutes``; every time the session still holds."""
    for wait in minutes:
        clock.wait(wait)
        assert client.get("/review/").status_code == 200, clock.offset


@BOTH_DATABASES
def test_a_session_ends_after_30_idle_minutes(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock(monkeypatch)
    _sign_in(client)
    # Each request renews the session, so activity keeps it going.
    _keep_using(client, clock, [29] * 3)
    clock.wait(31)
    assert _login_target(client.get("/review/")) == "/review/"
    # Signing in again works, and leaves only the new session behind.
    _sign_in(client)
    assert client.get("/review/").status_code == 200
    assert len(_session_rows(app)) == 1


@BOTH_DATABASES
def test_a_busy_session_still_ends_8_hours_after_sign_in(
    client: FlaskClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock(monkeypatch)
    _sign_in(client)
    # A request every 25 minutes never lets the idle timeout strike...
    _keep_using(client, clock, [25] * 19)
    # ... but 8 hours after signing in the session is over all the same.
    clock.wait(25)
    assert _login_target(client.get("/review/")) == "/review/"
    lists = [e for e in store.audit.entries() if e["action"] == "list"]
    assert len(lists) == 19


def test_the_absolute_lifetime_is_configurable(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_app(database_url, REVIEW_SESSION_LIFETIME=3600) as app:
        client = FlaskClient(app, use_cookies=True)
        clock = _Clock(monkeypatch)
        _sign_in(client)
        _keep_using(client, clock, [20, 20, 19])
        clock.wait(2)
        assert _login_target(client.get("/review/")) == "/review/"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REVIEW_SESSION_LIFETIME", "8h"),
        ("REVIEW_SESSION_LIFETIME", 0),
        ("PERMANENT_SESSION_LIFETIME", -5),
    ],
)
def test_unusable_session_times_stop_start_up(database_url: str, name: str, value: object) -> None:
    with pytest.raises(StartupError, match=f"SCREENING_{name}"):
        create_app(
            {"TESTING": True, "DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, name: value}
        )


def test_a_review_session_does_not_open_the_json_api(client: FlaskClient) -> None:
    _sign_in(client)
    assert client.get("/v1/screenings").status_code == 401


# --- the list -------------------------------------------------------------------------


@BOTH_DATABASES
def test_the_list_is_newest_first_and_marks_urgent_ones_in_words_and_icon(
    client: FlaskClient,
) -> None:
    first = _submit(client, ref="MRN-1")
    urgent = _urgent(client)
    last = _submit(client, {"rf_cancer_history": True}, "MRN-3")
    _sign_in(client)
    page = client.get("/review/")
    assert page.status_code == 200
    assert _ROW_LINK.findall(page.text) == [last, urgent, first]
    rows = {_ROW_LINK.findall(row)[0]: row for row in page.text.split('<li class="screening ')[1:]}
    marked = re.compile(r'<span class="badge badge-urgent"><svg class="icon" aria-hidden="true"')
    assert marked.search(rows[urgent])
    assert "Urgent</span>" in rows[urgent]
    assert not marked.search(rows[first]) and not marked.search(rows[last])
    assert "Not yet reviewed" in rows[urgent]


@BOTH_DATABASES
def test_the_list_filters_by_outcome_and_review_status_and_pages(client: FlaskClient) -> None:
    ids = [_submit(client, ref=f"MRN-{n}") for n in range(3)]
    urgent = _urgent(client)
    assert client.post(
        f"/v1/screenings/{ids[0]}/review", json={}, headers=bearer("dr-c")
    ).status_code == (200)
    _sign_in(client)

    assert _ROW_LINK.findall(client.get("/review/?outcome=urgent_care").text) == [urgent]
    assert _ROW_LINK.findall(client.get("/review/?review_status=reviewed").text) == [ids[0]]
    pending = client.get("/review/?review_status=pending&outcome=")
    assert _ROW_LINK.findall(pending.text) == [urgent, ids[2], ids[1]]
    assert '<option value="pending" selected>' in pending.text

    first = client.get("/review/?limit=3")
    assert _ROW_LINK.findall(first.text) == [urgent, ids[2], ids[1]]
    older = re.search(r'<a href="([^"]+)" rel="next">Older screenings</a>', first.text)
    assert older is not None
    second = client.get(html.unescape(older.group(1)))
    assert _ROW_LINK.findall(second.text) == [ids[0]]
    assert "Older screenings" not in second.text
    assert 'href="/review/?limit=3">Newest screenings</a>' in second.text


def test_unusable_filters_get_a_page_that_says_why(client: FlaskClient) -> None:
    _sign_in(client)
    response = client.get("/review/?outcome=nothing_like_this")
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert "outcome: Must be one of" in response.text


# --- the detail page ---------------------------------------------------------------------


def test_the_detail_page_shows_the_outcome_the_basis_and_the_answers(
    client: FlaskClient, rulebook: Rulebook
) -> None:
    screening_id = _urgent(client)
    _sign_in(client)
    page = client.get(f"/review/{screening_id}")
    assert page.status_code == 200
    text = page.text
    view = client.get(f"/v1/screenings/{screening_id}", headers=bearer("dr-c")).get_json()
    ruleset = rulebook.ruleset
    assert escape(ruleset.outcomes[view["outcome"]].label) in text
    assert 'class="badge badge-urgent"' in text
    decided = next(rule for rule in ruleset.rules if rule.id == view["decided_by"])
    assert f"<dt>Deciding rule</dt><dd>{escape(decided.title)}</dd>" in text
    for finding in view["summary"]["clinician"]["findings"]:
        assert escape(finding["title"]) in text
        assert escape(finding["text"]) in text
        for source in finding["sources"]:
            assert escape(ruleset.sources[source].citation) in text
    patient = view["summary"]["patient"]
    for sentence in [patient["headline"], *patient["body"], patient["disclaimer"]]:
        assert f">{escape(sentence)}</p>" in text
    questionnaire = rulebook.questionnaire
    for link_id, value in view["answers"].items():
        item = questionnaire.by_link_id[link_id]
        words = f"<dt>{escape(item.text)}</dt><dd>{escape(item.display(value))}</dd>"
        assert words in text, link_id
    for entry in view["summary"]["clinician"]["key_answers"]:
        item = questionnaire.by_link_id[entry["linkId"]]
        assert f"<dt>{escape(item.text)}</dt><dd>{escape(entry['display'])}</dd>" in text
    assert '<details class="trace">' in text
    assert text.count('<li class="trace-rule">') == len(ruleset.rules)
    assert '<label for="note">Note</label>' in text
    assert '<button type="submit" class="button">Mark reviewed</button>' in text
    assert "No one has reviewed this screening yet." in text


def test_an_unknown_screening_gets_an_html_404(client: FlaskClient) -> None:
    _sign_in(client)
    response = client.get("/review/no-such-screening")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Screening not found" in response.text


# --- reviewing -------------------------------------------------------------------------------


@BOTH_DATABASES
def test_marking_reviewed_records_exactly_what_the_api_records(
    client: FlaskClient, store: Store
) -> None:
    screening_id = _urgent(client)
    _sign_in(client)
    response = _review(client, screening_id, "Called the patient.\r\nSeen today.")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/review/{screening_id}#review"
    page = client.get(f"/review/{screening_id}")
    assert "Marked reviewed." in page.text
    assert '<p class="note-text">Called the patient.\nSeen today.</p>' in page.text

    assert _review(client, screening_id, "   ").status_code == 303
    api = client.post(
        f"/v1/screenings/{screening_id}/review", json={"note": "By API."}, headers=bearer("dr-c")
    )
    assert api.status_code == 200
    review = _history(client, screening_id)
    assert review["status"] == "reviewed"
    assert [(e["by"], e["note"]) for e in review["history"]] == [
        ("dr-c", "Called the patient.\nSeen today."),
        ("dr-c", None),
        ("dr-c", "By API."),
    ]
    reviews = [e for e in store.audit.entries(screening_id) if e["action"] == "review"]
    assert [(e["actor"], e["screening_id"]) for e in reviews] == [("key:dr-c", screening_id)] * 3


def test_a_note_with_a_script_is_shown_as_text(client: FlaskClient) -> None:
    screening_id = _urgent(client)
    _sign_in(client)
    note = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    assert _review(client, screening_id, note).status_code == 303
    page = client.get(f"/review/{screening_id}").text
    assert f'<p class="note-text">{escape(note)}</p>' in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script" not in page
    assert "<img" not in page


def test_a_note_over_the_limit_is_refused_and_kept_in_the_form(client: FlaskClient) -> None:
    screening_id = _urgent(client)
    _sign_in(client)
    note = "x" * 2001
    response = _review(client, screening_id, note)
    assert response.status_code == 422
    assert "Must be at most 2000 characters." in response.text
    assert f">{note}</textarea>" in response.text
    assert 'aria-invalid="true"' in response.text
    assert _history(client, screening_id) == {"status": "pending", "history": []}


@BOTH_DATABASES
def test_reviews_without_a_valid_session_and_csrf_token_are_refused(
    app: Flask, client: FlaskClient
) -> None:
    screening_id = _urgent(client)
    _sign_in(client)
    url = f"/review/{screening_id}/review"
    assert client.post(url, data={"note": "no token"}).status_code == 400
    assert client.post(url, data={"note": "forged", "csrf_token": "forged"}).status_code == 400

    # A CSRF token from a session that is not signed in: sent to sign in, nothing saved.
    stranger = FlaskClient(app, use_cookies=True)
    token = _csrf(stranger.get("/review/login"))
    response = stranger.post(url, data={"note": "stranger", "csrf_token": token})
    assert _login_target(response) is None
    assert "nothing was saved" in stranger.get("/review/login").text

    # A token from a signed-in session does not work in another one.
    other = FlaskClient(app, use_cookies=True)
    _sign_in(other)
    own = _csrf(client.get(f"/review/{screening_id}"))
    assert other.post(url, data={"note": "crossed", "csrf_token": own}).status_code == 400

    assert _history(client, screening_id) == {"status": "pending", "history": []}


# --- audit ------------------------------------------------------------------------------------


@BOTH_DATABASES
def test_every_page_read_and_every_review_is_audited(client: FlaskClient, store: Store) -> None:
    first = _submit(client)
    urgent = _urgent(client)
    _sign_in(client)
    client.get("/review/")
    _review(client, urgent, "Seen.")
    client.get(f"/review/{first}")
    entries = [
        (e["actor"], e["action"], e["screening_id"])
        for e in store.audit.entries()
        if e["action"] != "create"
    ]
    assert entries == [
        ("key:dr-c", "sign_in", None),
        ("key:dr-c", "list", urgent),
        ("key:dr-c", "list", first),
        ("key:dr-c", "read", urgent),
        ("key:dr-c", "review", urgent),
        ("key:dr-c", "read", first),
    ]
    assert "Seen." not in repr(store.audit.entries())


# --- safety of every page ------------------------------------------------------------------


def test_every_page_sends_the_security_headers(client: FlaskClient) -> None:
    screening_id = _urgent(client)
    responses = {"login": client.get("/review/login")}
    responses["refused form"] = client.post("/review/login", data={"token": TOKENS["dr-c"]})
    responses["redirect"] = client.get("/review/")
    _sign_in(client)
    responses["list"] = client.get("/review/")
    responses["detail"] = client.get(f"/review/{screening_id}")
    responses["not found"] = client.get("/review/nothing")
    responses["stylesheet"] = client.get("/review/static/review.css")
    for name, response in responses.items():
        policy = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'none'" in policy, name
        assert "frame-ancestors 'none'" in policy, name
        assert "unsafe-inline" not in policy and "script-src" not in policy, name
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["Referrer-Policy"] == "same-origin", name
        assert response.headers["X-Frame-Options"] == "DENY", name
        if response.mimetype == "text/html":
            assert response.headers["Cache-Control"] == "no-store", name
            # The policy would block these: none may be in a page.
            assert "<script" not in response.text and " style=" not in response.text, name
    assert responses["stylesheet"].mimetype == "text/css"
    # A file response holds the file open until closed.
    responses["stylesheet"].close()


def test_the_json_api_needs_no_csrf_token(client: FlaskClient) -> None:
    screening_id = _urgent(client)
    response = client.post(
        f"/v1/screenings/{screening_id}/review", json={"note": "ok"}, headers=bearer("dr-c")
    )
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response.headers


def test_without_a_secret_key_the_pages_refuse_and_the_api_works(database_url: str) -> None:
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "API_KEYS": API_KEYS})
    client = app.test_client()
    for path in ("/review/login", "/review/"):
        response = client.get(path)
        assert response.status_code == 503
        assert "SCREENING_SECRET_KEY" in response.text
    assert client.get("/v1/questionnaire").status_code == 200
    app_store(app).engine.dispose()


@pytest.mark.parametrize("secret", ["too-short", 12345])
def test_an_unusable_secret_key_stops_start_up(database_url: str, secret: object) -> None:
    with pytest.raises(StartupError, match="SCREENING_SECRET_KEY"):
        create_app({"TESTING": True, "DATABASE_URL": database_url, "SECRET_KEY": secret})


def test_the_pages_times_are_the_apis_in_machine_form_and_words_for_people(
    client: FlaskClient,
) -> None:
    screening_id = _urgent(client)
    view = client.get(f"/v1/screenings/{screening_id}", headers=bearer("dr-c")).get_json()
    created, due = view["created_at"], view["review"]["due_at"]
    assert due is not None
    _sign_in(client)
    listed = client.get("/review/").text
    detail = client.get(f"/review/{screening_id}").text
    # The attribute a browser or screen reader reads is the API's RFC 3339 time, to the
    # microsecond; the words are the minute, in UTC.
    assert f'<time datetime="{created}">' in listed
    assert f'<time datetime="{due}">' in listed and f'<time datetime="{due}">' in detail
    minute = datetime.fromisoformat(created).strftime("%d %b %Y, %H:%M UTC")
    assert minute in listed and f"Screening of {minute}" in detail


def test_an_urgent_screening_states_no_finding_that_denies_a_red_flag(
    app: Flask, client: FlaskClient, store: Store
) -> None:
    screening_id = _urgent(client)
    # A screening stored before findings left the fallback out still lists it.
    stored = store.screenings.get(screening_id)
    assert stored is not None
    fallback: Finding = {
        "rule": "meets_discussion_criteria",
        "title": "No exclusion found; discussion with a specialist may be appropriate",
        "text": "No exclusion or red flag found: referral may be discussed.",
        "sources": ["S1"],
    }
    stored.result.clinician["findings"].append(fallback)
    old = replace(stored, id="0" * 32)
    store.screenings.insert(old, idempotency=None, response=(201, "{}"), deliveries=[])
    _sign_in(client)
    for shown in (screening_id, old.id):
        page = client.get(f"/review/{shown}")
        assert page.status_code == 200
        text = page.text
        assert "Possible" in text or "Fever" in text
        assert "No exclusion or red flag found" not in text
        assert "more finding" not in text


# --- rule packages on the pages ------------------------------------------------------------


def test_the_list_filters_by_ruleset_and_names_each_rows_rules(client: FlaskClient) -> None:
    default = _submit(client)
    older = client.post(
        "/v1/screenings",
        json={"answers": base_answers(), "questionnaire": {"id": Q, "version": "1.0.0"}},
        headers=bearer("portal-a"),
    ).get_json()["id"]
    cms = client.post(
        "/v1/screenings",
        json={"answers": base_answers(), "ruleset": {"id": "lumbar-rfa-cms"}},
        headers=bearer("portal-a"),
    ).get_json()["id"]
    _sign_in(client)

    every = client.get("/review/")
    assert _ROW_LINK.findall(every.text) == [cms, older, default]
    assert "<dt>Rules</dt><dd>lumbar-rfa-cms 1.1.0</dd>" in every.text
    for value, label in [
        ("lumbar-rfa", "lumbar-rfa, any version"),
        ("lumbar-rfa/1.0.1", "lumbar-rfa 1.0.1 (in use)"),
        ("lumbar-rfa-cms/1.1.0", "lumbar-rfa-cms 1.1.0 (in use)"),
    ]:
        assert f'<option value="{value}">{label}</option>' in every.text
    assert _ROW_LINK.findall(client.get("/review/?ruleset=lumbar-rfa").text) == [older, default]
    one = client.get("/review/?ruleset=lumbar-rfa/1.0.1")
    assert _ROW_LINK.findall(one.text) == [older]
    assert '<option value="lumbar-rfa/1.0.1" selected>' in one.text
    assert _ROW_LINK.findall(client.get("/review/?ruleset=lumbar-rfa-cms").text) == [cms]
    # The choice is kept on the next page's link.
    paged = client.get("/review/?ruleset=lumbar-rfa&limit=1")
    assert "ruleset=lumbar-rfa" in html.unescape(_next_link(paged))
    refused = client.get("/review/?ruleset=lumbar-rfa/9.9.9")
    assert refused.status_code == 422
    assert "ruleset_version: Must be one of" in refused.text


def test_each_row_of_the_list_is_in_the_words_of_its_own_rules(
    database_url: str, tmp_path: Path
) -> None:
    tree = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, tree)
    ruleset = tree / "lumbar-rfa-cms" / "1.1.0" / "ruleset.yaml"
    text = ruleset.read_text(encoding="utf-8")
    ruleset.write_text(
        text.replace("label: Continue conservative care", "label: Keep up conservative care"),
        encoding="utf-8",
    )
    with make_app(database_url, RULES_DIR=str(tree)) as app:
        client = FlaskClient(app, use_cookies=True)
        default = _submit(client, {"pain_intensity": 4})
        cms = client.post(
            "/v1/screenings",
            json={
                "answers": {**base_answers(), "pain_interference": 4},
                "ruleset": {"id": "lumbar-rfa-cms"},
            },
            headers=bearer("portal-a"),
        ).get_json()["id"]
        _sign_in(client)
        page = client.get("/review/").text
        rows = dict(
            zip(_ROW_LINK.findall(page), page.split('<li class="screening ')[1:], strict=True)
        )
        assert set(rows) == {default, cms}
        assert "Continue conservative care" in rows[default]
        assert "Keep up conservative care" in rows[cms]
        assert "Continue conservative care" not in rows[cms]
        assert "Keep up conservative care" in client.get(f"/review/{cms}").text


def _next_link(page: TestResponse) -> str:
    found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
    assert found is not None
    return found.group(1)


def test_the_detail_page_names_its_rules_and_links_their_changelog(
    client: FlaskClient, rulebook: Rulebook
) -> None:
    screening_id = _submit(client)
    _sign_in(client)
    page = client.get(f"/review/{screening_id}").text
    link = "/review/rulesets/lumbar-rfa/1.2.0#changelog"
    assert (
        "<dt>Decided by the rules</dt><dd>lumbar-rfa version 1.2.0 "
        f'(<a href="{link}">what changed in this version</a>)</dd>'
    ) in page
    assert "Rules in shadow" not in page
    ruleset_page = client.get("/review/rulesets/lumbar-rfa/1.2.0")
    assert ruleset_page.status_code == 200
    text = ruleset_page.text
    package = rulebook.package("lumbar-rfa", "1.2.0")
    assert package is not None
    assert "<dd>In use</dd>" in text
    assert f"By {escape(package.approved_by)} on 2026-12-07" in text
    for entry in package.changelog:
        assert f"<h3>Version {entry['version']}, {entry['date']}</h3>" in text
        for change in entry["changes"]:
            assert f"<li>{escape(change)}</li>" in text
    assert text.count('<li class="finding">') == len(package.ruleset.rules)
    # A note says which outcomes it goes with.
    assert "Note, only with " in text
    assert '<a href="/review/rulesets/lumbar-rfa/1.0.0">1.0.0</a>' in text
    missing = client.get("/review/rulesets/lumbar-rfa/9.9.9")
    assert missing.status_code == 404
    assert missing.mimetype == "text/html"


def test_the_detail_page_shows_a_shadow_outcome_only_where_it_differs(
    database_url: str, tmp_path: Path
) -> None:
    with make_app(database_url, RULES_DIR=str(shadow_tree(tmp_path))) as app:
        client = FlaskClient(app, use_cookies=True)
        # Pain 6 of 10: enough for 1.2.0, below the shadow 1.3.0's new threshold of 7.
        differs = _submit(client, {"pain_intensity": 6})
        agrees = _submit(client, {"pain_intensity": 9})
        _sign_in(client)
        page = client.get(f"/review/{differs}").text
        assert "Rules in shadow would decide differently" in page
        shadow = page[page.index('id="shadow"') : page.index('id="findings"')]
        assert '<a href="/review/rulesets/lumbar-rfa/1.3.0">lumbar-rfa version 1.3.0</a>' in shadow
        assert 'would give <span class="outcome outcome-' in shadow
        assert ">Continue conservative care</span>" in shadow
        # The copied rule keeps its title; its threshold is what the shadow package changed.
        assert 'decided by the rule "Pain intensity below 5 of 10"' in shadow
        assert "not shown to the patient" in shadow
        same = client.get(f"/review/{agrees}").text
        assert "Rules in shadow would decide differently" not in same
        ruleset_page = client.get("/review/rulesets/lumbar-rfa/1.3.0").text
        assert "In shadow: checked beside the rules in use" in ruleset_page
    # The shadow package taken out again: its stored outcome is shown as stored, unlinked.
    with make_app(database_url) as app:
        client = FlaskClient(app, use_cookies=True)
        _sign_in(client)
        page = client.get(f"/review/{differs}").text
        shadow = page[page.index('id="shadow"') : page.index('id="findings"')]
        assert "lumbar-rfa version 1.3.0 (no longer loaded) would give" in shadow
        assert ">continue_conservative_care</span>" in shadow
        assert 'decided by the rule "pain_below_threshold"' in shadow
        assert "/review/rulesets/lumbar-rfa/1.3.0" not in shadow
