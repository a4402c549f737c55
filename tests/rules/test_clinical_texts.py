"""The texts files under docs/clinical-safety/texts/ are what the rules give now."""

from __future__ import annotations

import pytest

from screening.rules.rulebook import Package
from tests.support.clinical_texts import TEXTS_DIR
from tests.support.clinical_texts import documented
from tests.support.clinical_texts import file_name
from tests.support.clinical_texts import render

PACKAGES = documented()


@pytest.mark.parametrize("package", PACKAGES, ids=[p.describe() for p in PACKAGES])
def test_each_packages_texts_file_is_current(package: Package) -> None:
    path = TEXTS_DIR / file_name(package)
    assert path.is_file(), f"{path} is missing: run make texts"
    assert path.read_text(encoding="utf-8") == render(package), (
        f"{path} is not what the rules give now: run make texts and review the change"
    )


def test_no_texts_file_is_left_for_a_package_not_documented() -> None:
    expected = {file_name(p) for p in PACKAGES}
    assert {path.name for path in TEXTS_DIR.glob("*.md")} == expected


def test_a_texts_file_shows_every_language_and_the_clinician_view() -> None:
    package = next(p for p in PACKAGES if p.default)
    text = render(package)
    assert "Patient (English):" in text and "Patient (Spanish):" in text
    assert "Clinician: **" in text
    # Each valid case has its section.
    assert text.count("\n## ") >= 50
