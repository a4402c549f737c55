"""The markers that keep `make test-fast` fast: `deployment` (the service's own processes,
containers) and `browser` (Chromium). The helpers that start such things ask for the marker,
so a test that forgets it fails at once instead of slowing the fast run down unseen."""

from __future__ import annotations

import pytest

#: The markers of the test being set up (set by ``tests/conftest.py`` before its fixtures).
_current: set[str] = set()


def set_current(item: pytest.Item) -> None:
    """Remember ``item``'s markers while its fixtures are set up and it runs."""
    _current.clear()
    _current.update(mark.name for mark in item.iter_markers())


def require(marker: str, what: str) -> None:
    """Fail unless the running test carries ``marker`` (``what`` says what needed it)."""
    if marker not in _current:
        pytest.fail(
            f"{what} needs the '{marker}' marker on the test (make test-fast leaves those out)"
        )
