"""Patient-facing text: plain (US grade 6 or lower), kind, and never diagnostic."""

from __future__ import annotations

import re

import pytest
import textstat

from screening.rules.rulebook import load_rules
from tests.support.app import RULES_DIR

RULEBOOK = load_rules(RULES_DIR)
RULESET = RULEBOOK.ruleset
MAX_GRADE = 6.0
PROCEDURE = (
    "lumbar medial branch radiofrequency denervation "
    "(also called radiofrequency ablation or rhizotomy)"
)


def patient_texts() -> list[tuple[str, str]]:
    """Every text a patient reads, as a name and the whole passage."""
    texts = [("disclaimer", RULESET.disclaimer)]
    for rule in RULESET.rules:
        if rule.patient:
            assert rule.outcome is not None
            headline = RULESET.outcomes[rule.outcome].headline
            texts.append((f"rule {rule.id}", " ".join([headline, *rule.patient])))
        if rule.patient_note:
            texts.append((f"note {rule.id}", rule.patient_note))
    for item in RULEBOOK.questionnaire.items:
        # Options are read with their question: a lone label like "MRI" has no grade.
        options = " ".join(f"{option.display}." for option in item.options)
        texts.append((f"item {item.link_id}", f"{item.text} {options}".strip()))
    for group in RULEBOOK.questionnaire.groups:
        # A two-word heading has no grade alone: read it with its questions.
        questions = [i.text for i in RULEBOOK.questionnaire.items if i.group == group.link_id]
        texts.append((f"group {group.link_id}", " ".join([f"{group.text}.", *questions])))
    return texts


TEXTS = patient_texts()


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=[name for name, _ in TEXTS])
def test_grade_6_or_lower(name: str, text: str) -> None:
    assert textstat.flesch_kincaid_grade(text) <= MAX_GRADE


FORBIDDEN = [
    r"\byou have (a|an)?\s*(\w+ )?"
    r"(syndrome|disease|cancer|infection|fracture|tumou?r|arthritis|radiculopathy|sciatica|stenosis)",
    r"\byou qualify\b",
    r"\bqualif(y|ies|ied) for\b",
    r"\beligib",
    r"\bdiagnosed with\b",
    r"\bdiagnosis of\b",
    r"\byou are a (good )?candidate\b",
    r"\bwill (cure|fix)\b",
    r"\bselective dorsal rhizotomy\b",
    # Named conditions never appear as findings in patient text.
    r"\bcauda equina\b",
    r"\bradiculopathy\b",
    r"\bosteoporosis\b",
    r"\bmalignan",
    r"\bfacet joint (pain|syndrome|arthritis)\b",
]


@pytest.mark.parametrize(("name", "text"), TEXTS, ids=[name for name, _ in TEXTS])
def test_never_diagnostic(name: str, text: str) -> None:
    for pattern in FORBIDDEN:
        assert not re.search(pattern, text, re.IGNORECASE), (name, pattern)


@pytest.mark.parametrize(
    "text", ["You have sciatica.", "You qualify for this.", "You are eligible."]
)
def test_the_wording_check_catches_diagnostic_sentences(text: str) -> None:
    assert any(re.search(p, text, re.IGNORECASE) for p in FORBIDDEN)


def test_summaries_say_they_are_not_a_diagnosis_and_when_to_get_help() -> None:
    assert "not a diagnosis" in RULESET.disclaimer
    assert "get medical help" in RULESET.disclaimer


def test_bodies_have_one_to_four_sentences() -> None:
    for rule in RULESET.rules:
        if rule.kind == "decision":
            assert 1 <= len(rule.patient) <= 4, rule.id
            for sentence in rule.patient:
                assert len(re.findall(r"[.!?](\s|$)", sentence)) == 1, (rule.id, sentence)


def test_urgent_texts_say_to_get_help_today() -> None:
    for rule in RULESET.rules:
        if rule.outcome == "urgent_care":
            text = " ".join(rule.patient)
            assert re.search(r"\b(today|now|right away)\b", text), rule.id
    for rule_id in ("cauda_equina_signs", "worsening_leg_weakness"):
        rule = next(r for r in RULESET.rules if r.id == rule_id)
        assert "emergency room" in " ".join(rule.patient)
        assert "emergency number" in " ".join(rule.patient)


def test_the_procedure_is_named_as_the_spec_names_it() -> None:
    for rule in RULESET.rules:
        text = " ".join(rule.patient)
        if "radiofrequency" in text:
            assert PROCEDURE in text, rule.id
    named = [r.id for r in RULESET.rules if PROCEDURE in " ".join(r.patient)]
    assert named == ["positive_block", "meets_discussion_criteria"]


def test_patient_lines_follow_the_spec() -> None:
    with_patient_line = {r.id for r in RULESET.rules if r.kind == "note" and r.patient_note}
    # rules-v1's four, each also phrased for the staff who see the person first
    # (clinical-safety-v1.md, 1), but imaging, which is only for a later visit.
    assert with_patient_line == {
        "takes_blood_thinners",
        "blood_thinners_tell_staff",
        "implanted_device",
        "implanted_device_tell_staff",
        "pregnancy",
        "pregnancy_tell_staff",
        "imaging_on_record",
    }


def test_card_summary_fits_140_characters_for_every_rule() -> None:
    for rule in RULESET.rules:
        if rule.kind == "decision":
            assert len(RULESET.card_summary(rule, 17)) <= 140, rule.id
