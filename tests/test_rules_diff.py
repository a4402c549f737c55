"""``flask --app screening rules diff OLD NEW``: what a reviewer must see, text and JSON."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import yaml
from flask.testing import FlaskCliRunner

from screening.rules.diff import diff_packages
from screening.rules.rulebook import load_package
from tests.support.app import RULES_ROOT

DEFAULT = RULES_ROOT / "lumbar-rfa" / "1.2.0"


def candidate(tmp_path: Path) -> Path:
    """A rule author's copy of the default package: a draft 1.3.0, pain threshold 6."""
    folder = tmp_path / "lumbar-rfa-1.3.0"
    shutil.copytree(DEFAULT, folder)
    ruleset = folder / "ruleset.yaml"
    text = ruleset.read_text(encoding="utf-8").replace(
        "version: 1.2.0\ntitle:", "version: 1.3.0\ntitle:"
    )
    text = text.replace(
        "{item: pain_intensity, less_than: 5}", "{item: pain_intensity, less_than: 6}"
    )
    ruleset.write_text(text, encoding="utf-8")
    es = folder / "i18n" / "es.yaml"
    es.write_text(
        es.read_text(encoding="utf-8").replace(
            "ruleset: {id: lumbar-rfa, version: 1.2.0}", "ruleset: {id: lumbar-rfa, version: 1.3.0}"
        ),
        encoding="utf-8",
    )
    package = yaml.safe_load((folder / "package.yaml").read_text(encoding="utf-8"))
    package.update(status="draft", default=False)
    (folder / "package.yaml").write_text(yaml.safe_dump(package), encoding="utf-8")
    return folder


def test_a_changed_threshold_is_the_only_change(runner: FlaskCliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        args=["rules", "diff", str(DEFAULT), str(candidate(tmp_path)), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)
    assert diff["items"] == {"added": [], "removed": [], "changed": []}
    assert diff["rules"]["added"] == diff["rules"]["removed"] == diff["rules"]["moved"] == []
    [changed] = diff["rules"]["changed"]
    assert changed["id"] == "pain_below_threshold"
    assert changed["changes"] == [
        {
            "field": "condition",
            "from": {"item": "pain_intensity", "less_than": 5},
            "to": {"item": "pain_intensity", "less_than": 6},
        }
    ]
    assert diff["texts"] == []
    text = runner.invoke(args=["rules", "diff", str(DEFAULT), str(candidate(tmp_path / "b"))])
    assert text.exit_code == 0, text.output
    assert "From lumbar-rfa 1.2.0 to lumbar-rfa 1.3.0" in text.output
    assert "changed  pain_below_threshold condition:" in text.output
    assert text.output.count("no change") == 2


def test_items_rules_moves_and_texts_between_versions_and_profiles() -> None:
    old, cms = (
        load_package(RULES_ROOT / "lumbar-rfa" / "1.0.0"),
        load_package(RULES_ROOT / "lumbar-rfa-cms" / "1.0.0"),
    )
    diff = diff_packages((old.questionnaire, old.ruleset), (cms.questionnaire, cms.ruleset))
    assert diff["items"]["added"] == ["second_block_relief_percent"]
    assert [c["id"] for c in diff["items"]["changed"]] == ["block_relief_percent"]
    assert {"no_functional_deficit", "two_blocks_80_percent"} <= set(diff["rules"]["added"])
    assert set(diff["rules"]["removed"]) == {"positive_block", "negative_block"}
    assert "source S8 citation" in {t["id"] for t in diff["texts"]}
    # Swapping two decision rules is a move of both.
    rules = list(old.ruleset.rules)
    rules[0], rules[1] = rules[1], rules[0]
    swapped = dataclasses.replace(old.ruleset, rules=tuple(rules))
    moved = diff_packages((old.questionnaire, old.ruleset), (old.questionnaire, swapped))["rules"][
        "moved"
    ]
    assert moved == [
        {"id": "worsening_leg_weakness", "from": 2, "to": 1},
        {"id": "cauda_equina_signs", "from": 1, "to": 2},
    ]


def test_a_missing_folder_is_named(runner: FlaskCliRunner, tmp_path: Path) -> None:
    result = runner.invoke(args=["rules", "diff", str(DEFAULT), str(tmp_path / "nowhere")])
    assert result.exit_code != 0
    assert "nowhere" in result.output


def test_a_long_text_change_is_shown_in_full(runner: FlaskCliRunner, tmp_path: Path) -> None:
    folder = candidate(tmp_path)
    ruleset = folder / "ruleset.yaml"
    old_text = "moderate or severe pain, 5 or more on a 0-10 scale (NICE NG59 1.3.2)."
    new_text = "pain of 6 or more on a 0-10 scale, as agreed at the audit of the year's screenings."
    text = ruleset.read_text(encoding="utf-8")
    assert old_text in text
    ruleset.write_text(text.replace(old_text, new_text), encoding="utf-8")
    result = runner.invoke(args=["rules", "diff", str(DEFAULT), str(folder)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("  changed  pain_below_threshold clinician:")
    was = " ".join(line.strip() for line in lines[start + 1 : start + 3])
    assert was.startswith("was: Usual pain intensity {pain_intensity}/10: below the referral")
    shown = " ".join(line.strip() for line in lines[start + 1 :])
    assert "now: Usual pain intensity {pain_intensity}/10: below the referral" in shown
    assert new_text in shown
    assert "..." not in result.output
    assert all(len(line) <= 100 for line in lines)
