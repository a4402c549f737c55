"""Every package's patient texts, English and Spanish: grade 6 or lower, never diagnostic.

tests/rules/test_texts.py and test_i18n.py read the default package closely; this
file holds every loaded package (profiles such as lumbar-rfa-cms included) to the
same reading level and wording rules.
"""

from __future__ import annotations

import re

import pytest
import textstat

from screening.rules.rulebook import Package
from screening.rules.rulebook import load_rules
from tests.rules.test_i18n import FORBIDDEN as FORBIDDEN_ES
from tests.rules.test_i18n import MIN_FERNANDEZ_HUERTA
from tests.rules.test_i18n import spanish
from tests.rules.test_texts import FORBIDDEN as FORBIDDEN_EN
from tests.rules.test_texts import MAX_GRADE
from tests.support.app import RULES_ROOT

PACKAGES = load_rules(RULES_ROOT).sorted_packages()


def english(package: Package) -> list[tuple[str, str]]:
    """The disclaimer, each decision rule with its headline, and each patient note."""
    ruleset = package.ruleset
    texts = [("disclaimer", ruleset.disclaimer)]
    for rule in ruleset.rules:
        if rule.outcome is not None and rule.patient:
            headline = ruleset.outcomes[rule.outcome].headline
            texts.append((f"rule {rule.id}", " ".join([headline, *rule.patient])))
        if rule.patient_note:
            texts.append((f"note {rule.id}", rule.patient_note))
    return texts


def spanish_texts(package: Package) -> list[tuple[str, str]]:
    """The same passages in Spanish, from the package's own catalog."""
    if "es" not in package.catalogs:
        return []
    texts = package.catalogs["es"].texts
    passages = [("disclaimer", texts.disclaimer)]
    for rule in package.ruleset.rules:
        if rule.outcome is not None:
            body = texts.bodies[rule.id]
            passages.append((f"rule {rule.id}", " ".join([texts.headlines[rule.outcome], *body])))
        if rule.id in texts.notes:
            passages.append((f"note {rule.id}", texts.notes[rule.id]))
    return passages


EN = [(p.describe(), name, text) for p in PACKAGES for name, text in english(p)]
ES = [(p.describe(), name, text) for p in PACKAGES for name, text in spanish_texts(p)]


def test_every_package_is_read() -> None:
    described = {p.describe() for p in PACKAGES}
    assert {"lumbar-rfa 1.0.0", "lumbar-rfa 1.1.0", "lumbar-rfa-cms 1.0.0"} <= described


@pytest.mark.parametrize(("package", "name", "text"), EN, ids=[f"{p}: {n}" for p, n, _ in EN])
def test_english_grade_6_or_lower_and_never_diagnostic(package: str, name: str, text: str) -> None:
    assert textstat.flesch_kincaid_grade(text) <= MAX_GRADE, (package, name)
    for pattern in FORBIDDEN_EN:
        assert not re.search(pattern, text, re.IGNORECASE), (package, name, pattern)
    # A payer profile screens; it never promises what a payer will pay for.
    assert not re.search(r"\b(covered|coverage|medicare will)\b", text, re.IGNORECASE)


@pytest.mark.parametrize(("package", "name", "text"), ES, ids=[f"{p}: {n}" for p, n, _ in ES])
def test_spanish_easy_to_read_and_never_diagnostic(package: str, name: str, text: str) -> None:
    with spanish():
        assert textstat.fernandez_huerta(text) >= MIN_FERNANDEZ_HUERTA, (package, name)
    for pattern in FORBIDDEN_ES:
        assert not re.search(pattern, text, re.IGNORECASE), (package, name, pattern)


@pytest.mark.parametrize("package", PACKAGES, ids=[p.describe() for p in PACKAGES])
def test_every_package_keeps_the_text_rules(package: Package) -> None:
    ruleset = package.ruleset
    assert "not a diagnosis" in ruleset.disclaimer
    for rule in ruleset.rules:
        if rule.kind != "decision":
            continue
        assert 1 <= len(rule.patient) <= 4, rule.id
        assert len(ruleset.card_summary(rule, 17)) <= 140, rule.id
        if rule.outcome == "urgent_care":
            assert re.search(r"\b(today|now|right away)\b", " ".join(rule.patient)), rule.id
