"""Debian's Chromium under Playwright, for the tests that drive real pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import sync_playwright

from tests.support.markers import require

CHROMIUM = Path("/usr/bin/chromium")
# CI sets this: there the browser tests must run, not skip.
REQUIRE_BROWSER = os.environ.get("SCREENING_TEST_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; skip (or fail in CI) when it is not installed.

    Never `playwright install`: nothing is downloaded.
    """
    require("browser", "Chromium")
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(f"SCREENING_TEST_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
