"""The built site in Chromium, with every request to another host refused: the API reference
draws the contract's routes from the site's own copy of Swagger UI, and every page passes
axe-core (no serious or critical problem).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser
from playwright.sync_api import Page
from playwright.sync_api import Route
from playwright.sync_api import expect

from screening import PROJECT_ROOT
from tests.support.browser import chromium
from tests.support.docs import build_site
from tests.support.docs import nav_pages
from tests.support.docs import page_url
from tests.support.serving import serving

pytestmark = [pytest.mark.browser]

CONTRACT = yaml.safe_load((PROJECT_ROOT / "openapi.yaml").read_text(encoding="utf-8"))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built site served over HTTP on loopback; its base URL."""
    folder = tmp_path_factory.mktemp("site")
    done = build_site(PROJECT_ROOT, folder)
    assert done.returncode == 0, done.stdout + done.stderr
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=folder))
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def offline_page(browser: Browser, site: str) -> Iterator[tuple[Page, list[str]]]:
    """A page that may load only from the site; the other hosts it tried, refused."""
    context = browser.new_context()
    elsewhere: list[str] = []

    def only_the_site(route: Route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(site).netloc:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_site)
    try:
        yield context.new_page(), elsewhere
    finally:
        context.close()


def test_the_reference_draws_every_route_of_the_contract_offline(
    offline_page: tuple[Page, list[str]], site: str
) -> None:
    page, elsewhere = offline_page
    page.goto(f"{site}/reference/")
    frame = page.frame_locator("iframe.swagger-ui-iframe")
    # Swagger UI has read openapi.yaml and drawn its operations (each path in `data-path`:
    # the drawn text has breaking hints between its parts).
    review = frame.locator(
        '.opblock-summary-path[data-path="/v1/screenings/{screening_id}/review"]'
    )
    expect(review).to_be_visible(timeout=20_000)
    drawn = frame.locator(".opblock-summary-path")
    paths = {drawn.nth(i).get_attribute("data-path") for i in range(drawn.count())}
    # Every route, and every webhook event the service sends.
    assert paths == set(CONTRACT["paths"]) | set(CONTRACT["webhooks"])
    assert elsewhere == []


@pytest.mark.parametrize("path", [page_url(page) for page in nav_pages()])
def test_every_page_passes_axe_offline(
    offline_page: tuple[Page, list[str]], site: str, path: str
) -> None:
    page, elsewhere = offline_page
    page.goto(f"{site}/{path}")
    violations = [
        violation
        for violation in Axe().run(page).response["violations"]
        if violation["impact"] in {"serious", "critical"}
    ]
    assert violations == [], [(v["id"], v["help"]) for v in violations]
    assert elsewhere == []
