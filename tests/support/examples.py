"""How many examples a property test draws: all of them in ``make test`` (what CI runs),
a fifth in ``make test-fast`` (``SCREENING_TEST_FAST=1``), the inner loop."""

from __future__ import annotations

import os

FAST = os.environ.get("SCREENING_TEST_FAST") == "1"


def examples(full: int) -> int:
    """``full`` in the whole suite; a fifth of it (at least 20) in the fast one."""
    return max(20, full // 5) if FAST else full
