"""The safety update's packages written out by hand from clinical-safety-v1.md.

An oracle independent of the rules data and the engine: for each package of the
safety update (lumbar-rfa 1.0.1, 1.1.1, 1.2.0; lumbar-rfa-cms 1.0.1, 1.1.0) it says,
in plain Python, which rules hold for a set of valid answers, which decides, and
which notes go with the outcome. Tests hold the YAML rules to it on every case and
on generated answers, and the cases' expectations were first written from it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

Answers = Mapping[str, Any]

URGENT = "urgent_care"
PRIMARY = "see_primary_care"
CONSERVATIVE = "continue_conservative_care"
SPECIALIST = "discuss_with_specialist"

#: Every package the oracle knows: (ruleset id, version) -> questionnaire version.
PACKAGES: dict[tuple[str, str], str] = {
    ("lumbar-rfa", "1.0.1"): "1.0.0",
    ("lumbar-rfa", "1.1.1"): "1.1.0",
    ("lumbar-rfa", "1.2.0"): "1.2.0",
    ("lumbar-rfa-cms", "1.0.1"): "1.1.0",
    ("lumbar-rfa-cms", "1.1.0"): "1.2.0",
}
CONSERVATIVE_CARE = {
    "physical_therapy_or_exercise",
    "manual_therapy",
    "pain_medicines",
    "psychological_therapy",
    "acupuncture",
}
LEG_SIGNS = {"pain_below_knee", "numbness_or_tingling", "weakness"}
BLOCKED = ("yes_once", "yes_twice_or_more")


def _reliefs(a: Answers, asks_second: bool) -> list[int]:
    """Each block's relief that the questionnaire asks (one on 1.0.0, each of two later)."""
    if a["medial_branch_block"] not in BLOCKED:
        return []
    if asks_second and a["medial_branch_block"] == "yes_twice_or_more":
        return [a["block_relief_percent"], a["second_block_relief_percent"]]
    return [a["block_relief_percent"]]


def decisions(ruleset: str, version: str, a: Answers) -> list[tuple[str, bool, str]]:
    """Every decision rule of the package, in order: (rule id, holds, outcome)."""
    questionnaire = PACKAGES[ruleset, version]
    cms = ruleset == "lumbar-rfa-cms"
    asks_when = questionnaire == "1.2.0"
    asks_second = questionnaire != "1.0.0"
    trauma = a["rf_major_trauma"]
    if asks_when:
        recent = trauma and a["major_trauma_when"] in ("in_last_6_weeks", "unsure")
        earlier = trauma and a["major_trauma_when"] == "longer_ago"
    else:
        # No question says when: pain that began after it and has lasted 6 weeks or more
        # dates the trauma at least that far back.
        recent = trauma and a["pain_duration"] in ("less_than_6_weeks", "unsure")
        earlier = trauma and not recent
    tried = set(a["treatments_tried"])
    repeat = a["previous_rfa"] == "yes"
    # Asked (and required) when there was an earlier treatment; -1 stands for "not asked".
    months: int = a.get("previous_rfa_relief_months", -1)
    percent: int | None = a.get("previous_rfa_relief_percent")
    reliefs = [] if repeat else _reliefs(a, asks_second)
    rules: list[tuple[str, bool, str]] = [
        ("cauda_equina_signs", a["rf_bladder_or_bowel_change"] or a["rf_saddle_numbness"], URGENT),
        ("worsening_leg_weakness", a["rf_leg_weakness_worsening"], URGENT),
        ("possible_infection", a["rf_fever"], URGENT),
        ("major_trauma", recent, URGENT),
        (
            "cancer_warning_signs",
            a["rf_cancer_history"] or a["rf_unexplained_weight_loss"],
            PRIMARY,
        ),
        (
            "fracture_or_infection_risk",
            a["rf_steroid_or_osteoporosis"] or a["rf_immunosuppressed_or_iv_drug_use"],
            PRIMARY,
        ),
        ("earlier_major_trauma", earlier, PRIMARY),
        ("under_18", a["age_years"] < 18, PRIMARY),
        (
            "leg_dominant_symptoms",
            a["pain_location"] == "mainly_leg_below_knee"
            or bool(LEG_SIGNS & set(a["leg_symptoms"])),
            PRIMARY,
        ),
        ("pain_outside_low_back", a["pain_location"] == "other", PRIMARY),
        ("pain_duration_unknown", a["pain_duration"] == "unsure", PRIMARY),
        (
            "pain_under_3_months",
            a["pain_duration"] in ("less_than_6_weeks", "6_to_12_weeks"),
            CONSERVATIVE,
        ),
        # Spinal injections alone are not conservative care: decided as "none".
        ("no_conservative_care_yet", not (tried & CONSERVATIVE_CARE), CONSERVATIVE),
        (
            "conservative_care_too_short",
            a.get("treatment_duration") == "less_than_6_weeks",
            CONSERVATIVE,
        ),
        (
            "conservative_care_helping",
            a.get("treatment_effect") in ("helped_a_lot", "still_ongoing"),
            CONSERVATIVE,
        ),
        ("pain_below_threshold", a["pain_intensity"] < 5, CONSERVATIVE),
    ]
    if cms:
        rules.append(("no_functional_deficit", a["pain_interference"] < 5, CONSERVATIVE))
    if asks_when:
        rules += [
            (
                "repeat_rfa_candidate",
                repeat and percent is not None and percent >= 50 and months >= 6,
                SPECIALIST,
            ),
            (
                "previous_rfa_little_relief",
                repeat and percent is not None and percent < 50,
                SPECIALIST,
            ),
        ]
    else:
        rules.append(("repeat_rfa_candidate", repeat and months >= 6, SPECIALIST))
    rules.append(("previous_rfa_short_relief", repeat and months < 6, SPECIALIST))
    twice = a["medial_branch_block"] == "yes_twice_or_more"
    if cms:
        rules += [
            (
                "two_blocks_80_percent",
                twice and len(reliefs) == 2 and min(reliefs) >= 80,
                SPECIALIST,
            ),
            ("block_under_80_percent", bool(reliefs) and min(reliefs) < 80, SPECIALIST),
            (
                "one_block_80_percent",
                a["medial_branch_block"] == "yes_once" and bool(reliefs) and reliefs[0] >= 80,
                SPECIALIST,
            ),
        ]
    elif asks_second:
        rules += [
            ("positive_block", bool(reliefs) and min(reliefs) >= 50, SPECIALIST),
            (
                "discordant_blocks",
                len(reliefs) == 2 and min(reliefs) < 50 <= max(reliefs),
                SPECIALIST,
            ),
            ("negative_block", bool(reliefs) and max(reliefs) < 50, SPECIALIST),
        ]
    else:
        # Questionnaire 1.0.0 asks one relief: after two or more blocks it confirms nothing.
        once = a["medial_branch_block"] == "yes_once"
        rules += [
            ("positive_block", once and bool(reliefs) and reliefs[0] >= 50, SPECIALIST),
            ("blocks_one_relief_asked", twice and bool(reliefs) and reliefs[0] >= 50, SPECIALIST),
            ("negative_block", bool(reliefs) and reliefs[0] < 50, SPECIALIST),
        ]
    rules.append(("meets_discussion_criteria", True, SPECIALIST))
    return rules


#: Note rules in order: (rule id, outcomes it goes with, condition).
NOTES: list[tuple[str, tuple[str, ...], Callable[[Answers], bool]]] = [
    ("takes_blood_thinners", (CONSERVATIVE, SPECIALIST), lambda a: a["blood_thinners"]),
    ("blood_thinners_tell_staff", (URGENT, PRIMARY), lambda a: a["blood_thinners"]),
    (
        "implanted_device",
        (CONSERVATIVE, SPECIALIST),
        lambda a: a["pacemaker_or_implanted_device"],
    ),
    (
        "implanted_device_tell_staff",
        (URGENT, PRIMARY),
        lambda a: a["pacemaker_or_implanted_device"],
    ),
    ("pregnancy", (CONSERVATIVE, SPECIALIST), lambda a: a["pregnant"] == "yes"),
    ("pregnancy_tell_staff", (URGENT, PRIMARY), lambda a: a["pregnant"] == "yes"),
    (
        "imaging_on_record",
        (CONSERVATIVE, SPECIALIST),
        lambda a: bool({"mri", "ct"} & set(a["imaging_done"])),
    ),
    ("no_imaging_needed_yet", (CONSERVATIVE, SPECIALIST), lambda a: "none" in a["imaging_done"]),
    ("functional_impact", (CONSERVATIVE, SPECIALIST), lambda a: a["pain_interference"] >= 5),
    ("previous_rfa_unsure", (CONSERVATIVE, SPECIALIST), lambda a: a["previous_rfa"] == "unsure"),
]


def oracle(ruleset: str, version: str, a: Answers) -> tuple[str, str, list[str]]:
    """(outcome, decided_by, matched_rules) for valid answers ``a`` under one package."""
    rules = decisions(ruleset, version, a)
    decided, _, outcome = next(rule for rule in rules if rule[1])
    matched = [rule_id for rule_id, held, _ in rules if held]
    matched += [rule_id for rule_id, outcomes, holds in NOTES if holds(a) and outcome in outcomes]
    return outcome, decided, matched
