"""The review pages in a real browser: Debian's Chromium through Playwright, served by gunicorn.

A clinician signs in, finds an urgent screening, reads why and marks it reviewed
with a note that then shows through the API; by mouse, by keyboard alone and at
390 px wide; and finds an overdue urgent screening first in the triage order.
axe-core checks every page for serious or critical WCAG problems.

Without /usr/bin/chromium these tests skip, except where
SCREENING_TEST_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser
from playwright.sync_api import Dialog
from playwright.sync_api import Page
from playwright.sync_api import ViewportSize
from playwright.sync_api import expect

from screening import PROJECT_ROOT
from screening.rules.rulebook import Rulebook
from screening.storage.tables import screenings
from tests.support.app import API_KEYS
from tests.support.app import SECRET_KEY
from tests.support.app import TOKENS
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.app import shadow_tree
from tests.support.browser import chromium
from tests.support.server import gunicorn

# Screenshots go to build/screenshots; the copies in docs/screenshots (README and guides) are
# refreshed with SCREENING_SCREENSHOTS_DIR=docs/screenshots, so a plain run leaves the tree clean
# (the pages show timestamps, so each run's pictures differ).
SCREENSHOTS = PROJECT_ROOT / os.environ.get("SCREENING_SCREENSHOTS_DIR", "build/screenshots")
WIDE = ViewportSize(width=1280, height=900)
NARROW = ViewportSize(width=390, height=844)
# Chromium, against the service under gunicorn.
pytestmark = [pytest.mark.browser, pytest.mark.deployment]
# Pressing Tab more often than this without reaching the target is a keyboard trap or a bug.
MAX_TABS = 80

_axe = Axe()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; skip (or fail in CI) when it is not installed."""
    with chromium() as launched:
        yield launched


@contextmanager
def _served(
    folder: Path, sqlite_template: Path, rules: Path | None = None
) -> Iterator[tuple[str, Path]]:
    """The real service under gunicorn on a fresh SQLite database in ``folder`` (with the
    rule packages in ``rules``, else the shipped ones); its base URL and the database file."""
    database = folder / "screening.db"
    shutil.copyfile(sqlite_template, database)
    env = {
        "SCREENING_DATABASE_URL": f"sqlite:///{database}",
        "SCREENING_API_KEYS": API_KEYS,
        "SCREENING_SECRET_KEY": SECRET_KEY,
    }
    if rules is not None:
        env["SCREENING_RULES_DIR"] = str(rules)
    with gunicorn(env, folder / "gunicorn.log", workers=1, threads=4) as base:
        yield base, database


@pytest.fixture(scope="module")
def server(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[str]:
    """The real service under gunicorn on a fresh SQLite database; its base URL."""
    with _served(tmp_path_factory.mktemp("review-browser"), sqlite_template) as (base, _):
        yield base


def _submit(base: str, changes: dict[str, Any], patient_ref: str) -> str:
    """Store a screening through the portal API; return its id."""
    answers = {**base_answers(), **changes}
    response = requests.post(
        f"{base}/v1/screenings",
        json={"answers": answers, "patient_ref": patient_ref},
        headers=bearer("portal-a"),
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def urgent_id(server: str) -> str:
    """Seed screenings of every kind, the urgent one not first; return the urgent one's id."""
    _submit(server, {"blood_thinners": True}, "MRN-1001")
    urgent = _submit(server, {"rf_fever": True}, "MRN-1002")
    _submit(server, {"rf_cancer_history": True}, "MRN-1003")
    _submit(server, {"pain_intensity": 3}, "MRN-1004")
    _submit(server, {}, "MRN-1005")
    return urgent


def _axe_clean(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the page; fail on any serious or critical violation."""
    violations: list[dict[str, Any]] = _axe.run(page).response["violations"]
    severe = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not severe, [
        (v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]]) for v in severe
    ]
    return violations


def _sign_in(page: Page, base: str) -> None:
    """Sign in through the form with the clinician token."""
    page.goto(f"{base}/review/login")
    page.get_by_label("Access token").fill(TOKENS["dr-c"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Screenings")).to_be_visible()


def _urgent_label(rulebook: Rulebook) -> str:
    """The label of the outcome the rules data marks critical."""
    return next(o.label for o in rulebook.ruleset.outcomes.values() if o.indicator == "critical")


def _api_history(base: str, screening_id: str) -> list[dict[str, Any]]:
    """The review history of a screening, read through the API as a clinician."""
    response = requests.get(
        f"{base}/v1/screenings/{screening_id}", headers=bearer("dr-c"), timeout=10
    )
    assert response.status_code == 200
    return list(response.json()["review"]["history"])


def test_a_new_clinician_finds_an_urgent_screening_reads_why_and_marks_it_reviewed(
    browser: Browser, server: str, urgent_id: str, rulebook: Rulebook
) -> None:
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()

    page.goto(f"{server}/review/")
    expect(page).to_have_url(f"{server}/review/login?next=/review/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to review screenings")
    _axe_clean(page)

    page.get_by_label("Access token").fill(TOKENS["portal-a"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Only clinician tokens can sign in")
    _axe_clean(page)

    page.get_by_label("Access token").fill(TOKENS["dr-c"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Screenings")).to_be_visible()
    _axe_clean(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "list.png"), full_page=True)

    page.get_by_label("Outcome").select_option(label=_urgent_label(rulebook))
    page.get_by_role("button", name="Show screenings").click()
    rows = page.locator("ol.screenings > li")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Urgent")
    rows.first.get_by_role("link").click()

    expect(page).to_have_url(f"{server}/review/{urgent_id}")
    decided = next(r for r in rulebook.ruleset.rules if r.id == "possible_infection")
    expect(page.locator(".finding-deciding h3")).to_contain_text(decided.title)
    expect(page.locator(".finding-deciding .sources")).to_contain_text(
        rulebook.ruleset.sources["S5"].citation
    )
    expect(page.locator("details.trace")).not_to_have_attribute("open", "")
    _axe_clean(page)
    # The top of the page (outcome, findings, patient summary) reads best in the guides.
    page.screenshot(
        path=str(SCREENSHOTS / "detail.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": WIDE["width"], "height": 1500},
    )

    note = "Called the patient; same-day assessment arranged."
    page.get_by_label("Note").fill(note)
    page.get_by_role("button", name="Mark reviewed").click()
    expect(page.get_by_role("status")).to_contain_text("Marked reviewed.")
    expect(page.locator(".history")).to_contain_text(note)
    _axe_clean(page)

    history = _api_history(server, urgent_id)
    assert [(entry["by"], entry["note"]) for entry in history] == [("dr-c", note)]

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out.")
    page.goto(f"{server}/review/{urgent_id}")
    expect(page.get_by_label("Access token")).to_be_visible()
    context.close()


def _tab_to(page: Page, selector: str) -> None:
    """Press Tab until the element matching ``selector`` has focus, which must be visible."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
            assert outline not in ("", "none"), f"no visible focus on {selector}"
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def test_everything_works_by_keyboard_alone(
    browser: Browser, server: str, urgent_id: str, rulebook: Rulebook
) -> None:
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.goto(f"{server}/review/login")

    _tab_to(page, "a.skip-link")
    _tab_to(page, "#token")
    page.keyboard.type(TOKENS["dr-c"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Screenings")).to_be_visible()

    _tab_to(page, "#outcome")
    page.keyboard.press("Home")
    # A closed select changes value with the arrow keys, without opening.
    label = _urgent_label(rulebook)
    for _ in range(len(rulebook.ruleset.outcomes) + 1):
        if page.evaluate("() => document.activeElement.selectedOptions[0].text") == label:
            break
        page.keyboard.press("ArrowDown")
    _tab_to(page, "form.filters button")
    page.keyboard.press("Enter")
    expect(page.locator("ol.screenings > li")).to_have_count(1)

    _tab_to(page, f'a[href="/review/{urgent_id}"]')
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server}/review/{urgent_id}")

    _tab_to(page, "details.trace summary")
    page.keyboard.press("Enter")
    expect(page.locator("details.trace")).to_have_attribute("open", "")

    _tab_to(page, "#note")
    page.keyboard.type("Reviewed by keyboard.")
    _tab_to(page, "#review form button")
    page.keyboard.press("Enter")
    expect(page.locator(".history")).to_contain_text("Reviewed by keyboard.")
    assert "Reviewed by keyboard." in [e["note"] for e in _api_history(server, urgent_id)]
    context.close()


def _fits(page: Page) -> None:
    """Nothing makes the page scroll sideways (WCAG 1.4.10 reflow)."""
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= NARROW["width"], f"{page.url} is {width} px wide"


def test_pages_fit_and_pass_axe_at_390_px(browser: Browser, server: str, urgent_id: str) -> None:
    context = browser.new_context(viewport=NARROW)
    page = context.new_page()
    page.goto(f"{server}/review/login")
    _fits(page)
    _axe_clean(page)
    _sign_in(page, server)
    _fits(page)
    _axe_clean(page)
    page.goto(f"{server}/review/{urgent_id}")
    page.locator("details.trace summary").click()
    _fits(page)
    _axe_clean(page)
    page.goto(f"{server}/review/no-such-screening")
    expect(page.get_by_role("heading", level=1)).to_have_text("Screening not found")
    _fits(page)
    _axe_clean(page)
    context.close()


def test_a_note_with_a_script_shows_as_text_and_never_runs(
    browser: Browser, server: str, urgent_id: str
) -> None:
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    _sign_in(page, server)
    page.goto(f"{server}/review/{urgent_id}")
    note = '<script>alert("script ran")</script><img src="x" onerror="alert(\'img ran\')">'
    page.get_by_label("Note").fill(note)
    page.get_by_role("button", name="Mark reviewed").click()
    expect(page.locator(".history li").last.locator(".note-text")).to_have_text(note)
    page.reload()
    expect(page.locator(".history li").last.locator(".note-text")).to_have_text(note)
    assert page.locator("main script, main img").count() == 0
    assert dialogs == []
    context.close()


@pytest.fixture(scope="module")
def triage_server(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[str, str]]:
    """A service whose urgent screening waited two hours unreviewed; (base URL, its id)."""
    folder = tmp_path_factory.mktemp("review-triage")
    with _served(folder, sqlite_template) as (base, database):
        _submit(base, {}, "MRN-2001")
        _submit(base, {"rf_cancer_history": True}, "MRN-2002")
        late = _submit(base, {"rf_fever": True}, "MRN-2003")
        _submit(base, {"pain_intensity": 3}, "MRN-2004")
        engine = sa.create_engine(f"sqlite:///{database}")
        with engine.begin() as conn:
            conn.execute(
                screenings.update()
                .where(screenings.c.id == late)
                .values(created_at=datetime.now(UTC) - timedelta(hours=2))
            )
        engine.dispose()
        yield base, late


def test_the_triage_list_by_keyboard_puts_the_overdue_urgent_screening_first(
    browser: Browser, triage_server: tuple[str, str]
) -> None:
    base, late = triage_server
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    _sign_in(page, base)
    _tab_to(page, "#sort")
    for _ in range(3):
        if page.evaluate("() => document.activeElement.value") == "triage":
            break
        page.keyboard.press("ArrowDown")
    _tab_to(page, "form.filters button")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"sort=triage"))
    first = page.locator("ol.screenings > li").first
    expect(first).to_contain_text("Urgent")
    expect(first.locator(".badge-overdue")).to_have_text("Overdue")
    expect(first.locator(".badge-overdue svg")).to_have_count(1)
    expect(first.get_by_text("Review due")).to_be_visible()
    _axe_clean(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "triage.png"), full_page=True)

    _tab_to(page, f'a[href="/review/{late}"]')
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{base}/review/{late}")
    expect(page.locator(".overdue-notice")).to_contain_text("Overdue: this urgent screening")
    _axe_clean(page)
    context.close()

    narrow = browser.new_context(viewport=NARROW)
    page = narrow.new_page()
    _sign_in(page, base)
    page.goto(f"{base}/review/?sort=triage")
    expect(page.locator("ol.screenings > li").first.locator(".badge-overdue")).to_be_visible()
    _fits(page)
    _axe_clean(page)
    narrow.close()


def _checked(page: Page, viewport: ViewportSize) -> None:
    """Axe-clean, and at the narrow width nothing scrolls sideways."""
    if viewport is NARROW:
        _fits(page)
    _axe_clean(page)


def test_rules_in_shadow_and_the_changelog_by_keyboard_and_axe_clean(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> None:
    folder = tmp_path_factory.mktemp("review-shadow")
    rules = shadow_tree(folder)
    with _served(folder, sqlite_template, rules) as (base, _):
        # Pain 6 of 10: enough for the rules in use, below the shadow package's threshold.
        differs = _submit(base, {"pain_intensity": 6}, "MRN-3001")
        for viewport in (WIDE, NARROW):
            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            _sign_in(page, base)
            page.goto(f"{base}/review/?ruleset=lumbar-rfa/1.2.0")
            expect(page.locator("#ruleset")).to_have_value("lumbar-rfa/1.2.0")
            expect(page.locator("ol.screenings > li")).to_have_count(1)
            _checked(page, viewport)
            page.goto(f"{base}/review/{differs}")
            shadow = page.locator("#shadow")
            expect(shadow).to_contain_text("lumbar-rfa version 1.3.0 would give")
            _checked(page, viewport)
            if viewport is WIDE:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOTS / "shadow.png"), full_page=False)
            _tab_to(page, 'a[href="/review/rulesets/lumbar-rfa/1.2.0#changelog"]')
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{base}/review/rulesets/lumbar-rfa/1.2.0#changelog")
            expect(page.get_by_role("heading", level=2, name="What changed")).to_be_visible()
            expect(page.locator("#changelog")).to_contain_text("Version 1.2.0, 2026-12-07")
            _checked(page, viewport)
            context.close()
