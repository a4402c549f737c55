"""Realistic screenings: answers drawn as a back-pain portal's patients would give them.

``answers(rng)`` draws one person's answers to questionnaire 1.2.0 with plausible
proportions and links between them (older people have had more scans; a block's
relief is mostly high or low; an earlier heat treatment that helped mostly helped for
months). ``for_questionnaire`` keeps what an earlier version asks. The proportions are
this project's estimates for a spine service's portal, not measured figures: they make
a database on which a rule change's replay shows the changes a real one would.

As a command, it fills a database through the service itself (the real rules and
storage), so each screening is stored with the result its package gave::

    python tools/realistic.py --database-url sqlite:///instance/realistic.db --count 3000 \\
        [--rules-dir RULES]

Each screening names a served questionnaire version in turn and, for one in four on
questionnaire 1.1.0 or later, the CMS profile, as portals and payers would.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
from typing import Any

from screening.rules.questionnaire import Questionnaire

CONSERVATIVE = [
    "physical_therapy_or_exercise",
    "manual_therapy",
    "pain_medicines",
    "psychological_therapy",
    "acupuncture",
]


def _pick(rng: random.Random, weights: dict[Any, float]) -> Any:
    return rng.choices(list(weights), list(weights.values()))[0]


def _relief(rng: random.Random) -> int:
    """A block's or treatment's relief in percent: mostly clearly high or clearly low."""
    if rng.random() < 0.6:
        return min(100, max(0, round(rng.gauss(78, 14))))
    return min(100, max(0, round(rng.gauss(25, 15))))


def answers(rng: random.Random) -> dict[str, Any]:
    """One person's answers to questionnaire 1.2.0 (every item it may ask)."""
    age = (
        rng.choice([16, 17]) if rng.random() < 0.02 else min(92, max(18, round(rng.gauss(52, 15))))
    )
    woman = rng.random() < 0.55
    a: dict[str, Any] = {
        "age_years": age,
        "pregnant": (
            ("yes" if rng.random() < 0.04 else "no") if woman and age <= 45 else "not_applicable"
        ),
        "pain_location": _pick(
            rng,
            {
                "low_back_only": 0.45,
                "low_back_and_buttock_or_thigh": 0.35,
                "mainly_leg_below_knee": 0.12,
                "other": 0.08,
            },
        ),
        "pain_duration": _pick(
            rng,
            {
                "less_than_6_weeks": 0.08,
                "6_to_12_weeks": 0.1,
                "3_to_6_months": 0.2,
                "6_to_12_months": 0.22,
                "more_than_12_months": 0.37,
                "unsure": 0.03,
            },
        ),
    }
    intensity = min(10, max(0, round(rng.gauss(6.2, 1.9))))
    a["pain_intensity"] = intensity
    a["pain_interference"] = min(10, max(0, round(intensity + rng.gauss(-0.5, 1.6))))
    legs = [
        c for c in ("pain_below_knee", "numbness_or_tingling", "weakness") if rng.random() < 0.12
    ]
    a["leg_symptoms"] = legs or ["none"]
    roll = rng.random()
    if roll < 0.07:
        a["treatments_tried"] = ["none"]
    elif roll < 0.1:
        a["treatments_tried"] = ["spinal_injections"]
    else:
        tried = [c for c in CONSERVATIVE if rng.random() < 0.4] or [rng.choice(CONSERVATIVE)]
        if rng.random() < 0.2:
            tried.append("spinal_injections")
        a["treatments_tried"] = tried
    if a["treatments_tried"] != ["none"]:
        a["treatment_duration"] = _pick(
            rng,
            {
                "less_than_6_weeks": 0.1,
                "6_to_12_weeks": 0.2,
                "more_than_12_weeks": 0.62,
                "unsure": 0.08,
            },
        )
        a["treatment_effect"] = _pick(
            rng,
            {
                "helped_a_lot": 0.12,
                "helped_a_little": 0.43,
                "did_not_help": 0.35,
                "still_ongoing": 0.1,
            },
        )
    scans = [
        c for c, p in (("xray", 0.35), ("mri", 0.25 + age / 250), ("ct", 0.06)) if rng.random() < p
    ]
    a["imaging_done"] = scans or [_pick(rng, {"none": 0.85, "unsure": 0.15})]
    a["medial_branch_block"] = _pick(
        rng, {"no": 0.66, "yes_once": 0.17, "yes_twice_or_more": 0.12, "unsure": 0.05}
    )
    if a["medial_branch_block"] in ("yes_once", "yes_twice_or_more"):
        a["block_relief_percent"] = _relief(rng)
    if a["medial_branch_block"] == "yes_twice_or_more":
        # A second block mostly agrees with the first.
        first = a["block_relief_percent"]
        a["second_block_relief_percent"] = (
            min(100, max(0, round(first + rng.gauss(0, 10))))
            if rng.random() < 0.8
            else _relief(rng)
        )
    a["previous_rfa"] = _pick(rng, {"no": 0.86, "yes": 0.1, "unsure": 0.04})
    if a["previous_rfa"] == "yes":
        helped = rng.random() < 0.65
        a["previous_rfa_relief_percent"] = _relief(rng) if helped else min(45, _relief(rng))
        a["previous_rfa_relief_months"] = (
            rng.choice([6, 8, 9, 12, 12, 18, 24]) if helped else rng.choice([0, 1, 2, 3, 4, 5, 6])
        )
    flags = {
        "rf_bladder_or_bowel_change": 0.01,
        "rf_saddle_numbness": 0.01,
        "rf_leg_weakness_worsening": 0.015,
        "rf_fever": 0.01,
        "rf_major_trauma": 0.06,
        "rf_cancer_history": 0.03 + age / 1500,
        "rf_unexplained_weight_loss": 0.02,
        "rf_steroid_or_osteoporosis": 0.02 + (0.05 if woman and age > 60 else 0),
        "rf_immunosuppressed_or_iv_drug_use": 0.02,
        "blood_thinners": 0.03 + age / 800,
        "pacemaker_or_implanted_device": 0.005 + age / 2000,
    }
    for link_id, chance in flags.items():
        a[link_id] = rng.random() < chance
    if a["rf_major_trauma"]:
        # Pain that began after the trauma dates it: long pain, an old fall or crash.
        recent = a["pain_duration"] in ("less_than_6_weeks", "unsure")
        a["major_trauma_when"] = (
            _pick(rng, {"in_last_6_weeks": 0.85, "unsure": 0.15})
            if recent
            else _pick(rng, {"longer_ago": 0.9, "unsure": 0.1})
        )
    return a


def for_questionnaire(drawn: dict[str, Any], questionnaire: Questionnaire) -> dict[str, Any]:
    """The answers a questionnaire asks: its items only, each enabled by earlier answers."""
    kept: dict[str, Any] = {}
    for item in questionnaire.items:
        if item.link_id not in drawn:
            continue
        if item.enable_when is not None and not item.enable_when.evaluate(kept):
            continue
        kept[item.link_id] = drawn[item.link_id]
    return kept


def fill(database_url: str, count: int, seed: int, rules_dir: str | None = None) -> dict[str, int]:
    """Store ``count`` realistic screenings through the service; return how many per
    (questionnaire version, ruleset id)."""
    from screening import create_app
    from screening import extension
    from screening.services.keys import token_digest
    from screening.storage.database import make_engine
    from screening.storage.migrate import migrate

    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()
    token = "realistic-fill-clinician"
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "API_KEYS": f"realistic-fill:clinician:{token_digest(token)}",
            "RATE_LIMIT": "",
            "SECRET_KEY": secrets.token_hex(32),
            **({"RULES_DIR": rules_dir} if rules_dir else {}),
        }
    )
    # A line per request would bury what the command prints.
    logging.getLogger("screening").setLevel(logging.WARNING)
    rulebook = extension.of(app).rulebook
    versions = rulebook.questionnaire_versions()
    rng = random.Random(seed)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    stored: dict[str, int] = {}
    for n in range(count):
        version = versions[n % len(versions)]
        package = rulebook.for_questionnaire(version)
        body: dict[str, Any] = {
            "answers": for_questionnaire(answers(rng), package.questionnaire),
            "questionnaire": {"id": package.questionnaire.id, "version": version},
        }
        profiles = [
            p
            for p in rulebook.sorted_packages()
            if p.status == "active"
            and not p.default
            and p.questionnaire_ref == package.questionnaire_ref
        ]
        if profiles and rng.random() < 0.25:
            body["ruleset"] = {"id": profiles[0].id, "version": profiles[0].version}
        response = client.post("/v1/screenings", json=body, headers=headers)
        if response.status_code != 201:
            raise SystemExit(
                f"screening {n}: {response.status_code} {response.get_data(as_text=True)}"
            )
        ruleset = response.get_json()["ruleset"]
        key = f"{version} {ruleset['id']} {ruleset['version']}"
        stored[key] = stored.get(key, 0) + 1
    return stored


def main() -> None:
    """Fill a database with realistic screenings (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--rules-dir",
        default=os.environ.get("SCREENING_RULES_DIR"),
        help="the rules folder (default: SCREENING_RULES_DIR, else the service's own)",
    )
    args = parser.parse_args()
    stored = fill(args.database_url, args.count, args.seed, args.rules_dir)
    for key, n in sorted(stored.items()):
        print(f"{n:>6}  questionnaire {key}")


if __name__ == "__main__":
    main()
