"""Which language a request gets: ?lang=, then Accept-Language, then English."""

from __future__ import annotations

import pytest

from screening.web.language import negotiate


@pytest.mark.parametrize(
    ("lang_param", "accept_language", "expected"),
    [
        (None, None, "en"),
        ("es", None, "es"),
        ("ES", None, "es"),
        ("es-MX", None, "es"),
        ("es_MX", None, "es"),
        (" es ", None, "es"),
        ("en", "es", "en"),
        ("es", "en-US,en;q=0.9", "es"),
        ("fr", "es", "es"),
        ("fr", None, "en"),
        ("", "es", "es"),
        ("*", "es", "es"),
        ("../../etc", "es", "es"),
        (None, "es-MX,es;q=0.9,en;q=0.8", "es"),
        (None, "en-US,en;q=0.9,es;q=0.8", "en"),
        (None, "es-419", "es"),
        (None, "fr", "en"),
        (None, "fr-CA, fr;q=0.9, es;q=0.5", "es"),
        (None, "en;q=0.5, es;q=0.7", "es"),
        (None, "es;q=0.5, en;q=0.5", "es"),
        (None, "en;q=0.5, es;q=0.5", "en"),
        (None, "en;q=0, es;q=0.1", "es"),
        (None, "es;q=0, *", "en"),
        (None, "es-MX, es;q=0", "en"),
        (None, "es-ES;q=0.1, en;q=0.2", "en"),
        (None, "*", "en"),
        (None, "*;q=0.5, es;q=0.4", "en"),
        (None, "es ; q=0.8", "es"),
        (None, "es;Q=0.8", "es"),
        (None, "es,,en", "es"),
        (None, "", "en"),
        # Malformed: an unknown parameter, a weight above 1 or with four decimals,
        # a bad tag, junk; malformed elements are skipped.
        (None, "es;q=abc", "en"),
        (None, "es;q=1.5", "en"),
        (None, "es;q=0.1234", "en"),
        (None, "es;level=1", "en"),
        (None, "es;q=0.5;q=0.6", "en"),
        (None, "español", "en"),
        (None, ";;;", "en"),
        (None, "!!, es;q=0.3", "es"),
        (None, "es" + ",x" * 300, "en"),
    ],
)
def test_negotiate(lang_param: str | None, accept_language: str | None, expected: str) -> None:
    assert negotiate(lang_param, accept_language) == expected
