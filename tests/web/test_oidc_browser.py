"""The whole sign-in as a clinician does it, in Chromium: the review pages under gunicorn, the
hospital's OpenID provider (oidc-provider under Node), its sign-in page, back to the
worklist, and signing out at both."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import Browser
from playwright.sync_api import expect

from tests.support.app import API_KEYS
from tests.support.app import SECRET_KEY
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.browser import chromium
from tests.support.oidc import openid_provider
from tests.support.server import free_port
from tests.support.server import gunicorn
from tests.support.serving import serving

pytestmark = [pytest.mark.browser, pytest.mark.deployment]

CLIENT_ID = "screening-review"
CLIENT_SECRET = "review-secret-for-the-browser"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_a_clinician_signs_in_at_the_provider_reviews_and_signs_out(
    browser: Browser, tmp_path: Path, sqlite_template: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = {
        "accounts": [
            {"id": "dr-jane", "name": "Dr Jane Carter", "roles": ["clinician"]},
            {"id": "nurse-bo", "name": "Bo Lind", "roles": ["nurse"]},
        ],
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [f"{base}/review/oidc/callback"],
                "post_logout_redirect_uris": [f"{base}/review/login"],
            }
        ],
    }
    database = tmp_path / "screening.db"
    shutil.copyfile(sqlite_template, database)
    with openid_provider(tmp_path, config) as provider:
        env = {
            "SCREENING_DATABASE_URL": f"sqlite:///{database}",
            "SCREENING_API_KEYS": API_KEYS,
            "SCREENING_SECRET_KEY": SECRET_KEY,
            "SCREENING_PUBLIC_URL": base,
            "SCREENING_OIDC_ISSUER": provider.issuer,
            "SCREENING_OIDC_CLIENT_ID": CLIENT_ID,
            "SCREENING_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            "SCREENING_OIDC_CLINICIAN_ROLES": "clinician",
            "SCREENING_OIDC_NAME": "Hospital login",
        }
        with gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=4, port=port):
            created = requests.post(
                f"{base}/v1/screenings",
                json={"answers": base_answers(), "patient_ref": "MRN-77"},
                headers=bearer("portal-a"),
                timeout=10,
            )
            screening_id = created.json()["id"]
            page = browser.new_page()
            try:
                page.goto(f"{base}/review/{screening_id}")
                expect(page).to_have_url(f"{base}/review/login?next=/review/{screening_id}")
                page.get_by_role("link", name="Sign in with Hospital login").click()
                # The provider's own sign-in page.
                page.select_option("select[name=login]", "dr-jane")
                page.get_by_role("button", name="Sign in").click()
                # Back on the page asked for, signed in as the person.
                expect(page).to_have_url(f"{base}/review/{screening_id}")
                expect(page.get_by_text("Dr Jane Carter")).to_be_visible()
                expect(page.get_by_text("through your organization")).to_be_visible()
                page.get_by_label("Note").fill("Called the patient.")
                page.get_by_role("button", name="Mark reviewed").click()
                expect(page.get_by_text("Marked reviewed.")).to_be_visible()
                read = requests.get(
                    f"{base}/v1/screenings/{screening_id}", headers=bearer("dr-c"), timeout=10
                ).json()
                (entry,) = read["review"]["history"]
                assert (entry["by"], entry["by_id"]) == ("Dr Jane Carter", "oidc:dr-jane")
                # Signing out here signs out at the provider too, then comes back.
                page.get_by_role("button", name="Sign out").click()
                expect(page).to_have_url(f"{base}/review/login")
                page.goto(f"{base}/review/")
                expect(page).to_have_url(f"{base}/review/login?next=/review/")
            finally:
                page.close()


@contextmanager
def ehr_page(port: int, frame_url: str) -> Iterator[str]:
    """The EHR's own page, on another site, that frames the launch URL."""
    body = (
        '<!doctype html><html lang="en"><head><title>EHR</title></head><body>'
        f'<h1>Patient chart</h1><iframe title="Screening" src="{frame_url}" '
        'width="1100" height="900"></iframe></body></html>'
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name BaseHTTPRequestHandler calls
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    with serving(ThreadingHTTPServer(("127.0.0.1", port), Handler)):
        yield f"http://localhost:{port}/chart"


def test_the_ehr_launches_the_pages_inside_its_frame(
    browser: Browser, tmp_path: Path, sqlite_template: Path
) -> None:
    # Three sites: the EHR and its authorization server on localhost, the service on
    # 127.0.0.1 (another site, so its cookie must be SameSite=None in the frame).
    port, ehr_port, idp_port = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    issuer = f"http://localhost:{idp_port}"
    config = {
        "issuer": issuer,
        "accounts": [{"id": "dr-jane", "name": "Dr Jane Carter", "fhirUser": "Practitioner/p-7"}],
        "clients": [
            {
                "client_id": "screening-in-ehr",
                "client_secret": "ehr-secret",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "redirect_uris": [f"{base}/smart/callback"],
                "scope": "openid fhirUser launch",
            }
        ],
    }
    database = tmp_path / "screening.db"
    shutil.copyfile(sqlite_template, database)
    with openid_provider(tmp_path, config, port=idp_port) as provider:
        assert provider.issuer == issuer
        clients = [
            {
                "iss": issuer,
                "client_id": "screening-in-ehr",
                "client_secret": "ehr-secret",
                "frame_ancestors": [f"http://localhost:{ehr_port}"],
            }
        ]
        env = {
            "SCREENING_DATABASE_URL": f"sqlite:///{database}",
            "SCREENING_API_KEYS": API_KEYS,
            "SCREENING_SECRET_KEY": SECRET_KEY,
            "SCREENING_PUBLIC_URL": base,
            "SCREENING_SMART_CLIENTS": json.dumps(clients),
        }
        with gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=4, port=port):
            for ref in ("123", "999"):
                requests.post(
                    f"{base}/v1/screenings",
                    json={"answers": base_answers(), "patient_ref": ref},
                    headers=bearer("portal-a"),
                    timeout=10,
                )
            launch = f"{base}/smart/launch?" + urlencode({"iss": issuer, "launch": "patient-123"})
            with ehr_page(ehr_port, launch) as chart:
                page = browser.new_page()
                try:
                    page.goto(chart)
                    frame = page.frame_locator("iframe[title=Screening]")
                    # The EHR's sign-in, inside the frame.
                    frame.locator("select[name=login]").select_option("dr-jane")
                    frame.get_by_role("button", name="Sign in").click()
                    expect(
                        frame.get_by_text("the patient the EHR opened these pages for")
                    ).to_be_visible()
                    expect(frame.locator("li.screening")).to_have_count(1)
                    expect(frame.get_by_text("from the EHR")).to_be_visible()
                finally:
                    page.close()
