"""What clinical-safety-v1.md asks of every result, as checks on one evaluated screening.

``problems(package, answers, result)`` lists every way a result breaks the contract:
words that suggest waiting on an urgent result, imaging or appointment notes where the
person needs care first, a label or sentence its own answers contradict, a repeat
procedure judged as a first one, and so on. The vignettes, every rule case and
generated answers are all held to it (tests/rules/test_clinical_safety.py,
test_vignettes.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import textstat

from screening.rules.engine import evaluate
from screening.rules.rulebook import Package

PROCEDURE = "radiofrequency denervation"
MAX_SUMMARY_GRADE = 6.0
MAX_SENTENCE_GRADE = 8.0
URGENT = "urgent_care"
PRIMARY = "see_primary_care"
#: Words that point a person who needs care first to a later visit, a specialist,
#: reports to bring, or waiting.
LATER = re.compile(
    r"\b(visit|appointment|specialist|bring|reports?|later|until|wait)\b", re.IGNORECASE
)
#: Clinician words about imaging or an appointment.
IMAGING_OR_APPOINTMENT = re.compile(
    r"\b(imaging|MRI|CT|scans?|x-rays?|appointment|reports?)\b", re.IGNORECASE
)
#: The rules that judge a first procedure: they never decide after an earlier one.
FIRST_PROCEDURE = {
    "positive_block",
    "negative_block",
    "discordant_blocks",
    "two_blocks_80_percent",
    "block_under_80_percent",
    "one_block_80_percent",
    "meets_discussion_criteria",
}
BLOCKED = ("yes_once", "yes_twice_or_more")


def sentences(text: str) -> list[str]:
    """The sentences of a patient text."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _reliefs(answers: Mapping[str, Any]) -> list[int]:
    if answers.get("medial_branch_block") not in BLOCKED:
        return []
    return [
        answers[link_id]
        for link_id in ("block_relief_percent", "second_block_relief_percent")
        if answers.get(link_id) is not None
    ]


def _urgent_flag(answers: Mapping[str, Any]) -> bool:
    """A warning sign other than trauma that sends the person for help today."""
    return any(
        answers.get(link_id)
        for link_id in (
            "rf_bladder_or_bowel_change",
            "rf_saddle_numbness",
            "rf_leg_weakness_worsening",
            "rf_fever",
        )
    )


def _notes_fit(outcome: str, patient: Mapping[str, Any], clinician: Mapping[str, Any]) -> list[str]:
    found = []
    if outcome in (URGENT, PRIMARY):
        texts = [*patient["notes"], patient["disclaimer"], *patient["body"]]
        for text in texts:
            if "Do not wait" in text:
                text = text.replace("Do not wait", "")
            if LATER.search(text):
                found.append(f"{outcome}: patient text suggests later care or waiting: {text!r}")
        for note in clinician["notes"]:
            if IMAGING_OR_APPOINTMENT.search(note["text"]):
                found.append(f"{outcome}: clinician note about imaging or a visit: {note['rule']}")
    return found


def _readable(patient: Mapping[str, Any]) -> list[str]:
    found = []
    whole = " ".join(
        [patient["headline"], *patient["body"], *patient["notes"], patient["disclaimer"]]
    )
    grade = textstat.flesch_kincaid_grade(whole)
    if grade > MAX_SUMMARY_GRADE:
        found.append(f"patient summary at grade {grade:.1f}")
    for sentence in sentences(whole):
        if PROCEDURE in sentence:
            continue
        grade = textstat.flesch_kincaid_grade(sentence)
        if grade > MAX_SENTENCE_GRADE:
            found.append(f"sentence at grade {grade:.1f}: {sentence!r}")
    return found


def _true_to_answers(answers: Mapping[str, Any], body: str) -> list[str]:
    """Patient sentences about blocks and an earlier treatment say what the answers show."""
    found = []
    reliefs = _reliefs(answers)
    months = answers.get("previous_rfa_relief_months")
    percent = answers.get("previous_rfa_relief_percent")
    for sentence in sentences(body):
        if "test shot" in sentence and reliefs:
            low, high = min(reliefs), max(reliefs)
            says_half = re.search(
                r"\b(a|each) test shot.* eased your pain by half or more", sentence
            )
            if says_half and "did not" not in sentence and low < 50:
                found.append(f"{sentence!r} with reliefs {reliefs}")
            says_under_half = re.search(
                r"\bno test shot|did not ease your pain by half or more", sentence
            )
            if says_under_half and high >= 50:
                found.append(f"{sentence!r} with reliefs {reliefs}")
            if "80 percent or more" in sentence and "did not" not in sentence and low < 80:
                found.append(f"{sentence!r} with reliefs {reliefs}")
            if "did not ease your pain by 80 percent or more" in sentence and low >= 80:
                found.append(f"{sentence!r} with reliefs {reliefs}")
        if sentence.startswith("One eased your pain by half or more") and reliefs:
            if not min(reliefs) < 50 <= max(reliefs):
                found.append(f"{sentence!r} with reliefs {reliefs}")
        if "heat treatment" in sentence and months is not None:
            if "lasted six months or more" in sentence and months < 6:
                found.append(f"{sentence!r} with relief lasting {months} months")
            if "did not ease your pain for as long as six months" in sentence and months >= 6:
                found.append(f"{sentence!r} with relief lasting {months} months")
        if "heat treatment" in sentence and percent is not None:
            if "did not ease your pain by half or more" in sentence and percent >= 50:
                found.append(f"{sentence!r} with best relief {percent}%")
            says_half = re.search(r"(?<!not )ease[ds]? your pain by half or more", sentence)
            if says_half and "did not" not in sentence and percent < 50:
                found.append(f"{sentence!r} with best relief {percent}%")
    return [f"patient text not true to the answers: {f}" for f in found]


def _decision_fits(
    package: Package, answers: Mapping[str, Any], result: Mapping[str, Any]
) -> list[str]:
    found = []
    outcome, decided_by = result["outcome"], result["decided_by"]
    body = " ".join(result["summary"]["patient"]["body"])
    new_questionnaire = "major_trauma_when" in package.questionnaire.by_link_id
    cms = package.id.endswith("-cms")
    # 7. An earlier treatment is never a first one; a repeat only after 50% for 6 months.
    if answers.get("previous_rfa") == "yes":
        if decided_by in FIRST_PROCEDURE:
            found.append(f"an earlier RF treatment judged by first-procedure rule {decided_by}")
        percent = answers.get("previous_rfa_relief_percent")
        lasted = answers["previous_rfa_relief_months"] >= 6
        if decided_by == "repeat_rfa_candidate" and not (
            lasted and (percent is None or percent >= 50)
        ):
            found.append("a repeat invited without 50% relief for 6 months")
        if decided_by != "repeat_rfa_candidate" and "doing it again" in body:
            found.append("a repeat invited by a rule that is not the repeat criterion")
    # 6. Blocks are read as two; a block short of the threshold never invites.
    reliefs = _reliefs(answers)
    threshold = 80 if cms else 50
    if reliefs and min(reliefs) < threshold and PROCEDURE in body:
        found.append(f"the procedure is invited after reliefs {reliefs}")
    # 5. Pain elsewhere is outside this check.
    if answers["pain_location"] == "other" and outcome not in (URGENT, PRIMARY):
        found.append(f"pain elsewhere decided {outcome}")
    # 8. Trauma is urgent when recent (or unknown), not otherwise.
    if answers.get("rf_major_trauma"):
        if new_questionnaire:
            recent = answers["major_trauma_when"] in ("in_last_6_weeks", "unsure")
        else:
            recent = answers["pain_duration"] in ("less_than_6_weeks", "unsure")
        if recent and outcome != URGENT:
            found.append(f"recent trauma decided {outcome}")
        if not recent and outcome == URGENT and not _urgent_flag(answers):
            found.append("older trauma sent for help today")
    # 4. Spinal injections alone decide as no care tried.
    if answers["treatments_tried"] == ["spinal_injections"]:
        as_none = {
            key: value
            for key, value in answers.items()
            if key not in ("treatment_duration", "treatment_effect")
        }
        as_none["treatments_tried"] = ["none"]
        clean, errors = package.questionnaire.validate(as_none)
        assert not errors, errors
        other = evaluate(clean, package.ruleset)
        if (other["outcome"], other["decided_by"]) != (outcome, decided_by):
            found.append(
                f"spinal injections alone decide {decided_by}, none decides {other['decided_by']}"
            )
    return found


def _labels(package: Package, result: Mapping[str, Any]) -> list[str]:
    label = result["summary"]["clinician"]["outcome_label"]
    if re.search(r"\b(RF|radiofrequency|denervation|rhizotomy|ablation)\b", label, re.IGNORECASE):
        return [f"outcome label {label!r} names the procedure, whichever rule decided"]
    return []


def problems(package: Package, answers: Mapping[str, Any], result: Mapping[str, Any]) -> list[str]:
    """Every way one result breaks clinical-safety-v1.md, in English (Spanish: spanish_problems)."""
    patient = result["summary"]["patient"]
    clinician = result["summary"]["clinician"]
    return [
        *_notes_fit(result["outcome"], patient, clinician),
        *_readable(patient),
        *_true_to_answers(answers, " ".join(patient["body"])),
        *_decision_fits(package, answers, result),
        *_labels(package, result),
    ]


#: Spanish that changes meaning (clinical-safety-v1.md, 10).
SPANISH_MISREADINGS = re.compile(
    r"bajó el dolor a la mitad|casi todas|casi siempre|no le bajó", re.IGNORECASE
)
#: The Spanish of LATER: a visit, a specialist, reports to bring, someone to wait for.
SPANISH_LATER = re.compile(
    r"\b(cita|especialista|experto|lleve|informes|más tarde|revisar sus respuestas)\b",
    re.IGNORECASE,
)
MIN_FERNANDEZ_HUERTA = 70.0


def spanish_problems(package: Package, result: Mapping[str, Any]) -> list[str]:
    """The Spanish patient summary of one result: readable and true to the English."""
    catalog = package.catalogs["es"]
    summary = catalog.patient_summary(
        result["summary"]["patient"], result["decided_by"], result["matched_rules"]
    )
    whole = " ".join(
        [summary["headline"], *summary["body"], *summary["notes"], summary["disclaimer"]]
    )
    found = []
    misreading = SPANISH_MISREADINGS.search(whole)
    if misreading:
        found.append(f"Spanish that changes meaning: {misreading.group(0)!r}")
    textstat.set_lang("es")
    try:
        score = textstat.fernandez_huerta(whole)
    finally:
        textstat.set_lang("en_US")
    if score < MIN_FERNANDEZ_HUERTA:
        found.append(f"Spanish summary at Fernández-Huerta {score:.0f}")
    english = result["summary"]["patient"]
    if len(summary["notes"]) != len(english["notes"]):
        found.append("Spanish and English carry different notes")
    if len(sentences(summary["disclaimer"])) != len(sentences(english["disclaimer"])):
        found.append("the Spanish disclaimer does not say what the English one says")
    if result["outcome"] in (URGENT, PRIMARY):
        texts = [*summary["notes"], summary["disclaimer"], *summary["body"]]
        for text in texts:
            if SPANISH_LATER.search(text):
                found.append(f"{result['outcome']}: Spanish suggests later care: {text!r}")
    return found
