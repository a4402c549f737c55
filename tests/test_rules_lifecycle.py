"""A rule change as docs/rules.md "Changing the rules" walks it: the safety patch lumbar-rfa 1.1.1,
from draft through diff, replay, shadow, approval and activation in place of 1.1.0, to
1.1.0's retirement. Every step on a copy of ``rules/`` as it was before the update."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from flask import Flask

from tests.support.app import BOTH_DATABASES
from tests.support.app import RULES_ROOT
from tests.support.app import bearer
from tests.support.app import make_app
from tests.test_safety_update import ADDED
from tests.test_safety_update import RETIRED

pytestmark = BOTH_DATABASES

Q = "lumbar-rfa-screening"


def _edit(path: Path, *pairs: tuple[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in pairs:
        assert old in text, (path.name, old)
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def _package(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "package.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _draft(tree: Path) -> Path:
    """Step 1 of docs/rules.md: the rules before the safety update, with lumbar-rfa 1.1.1 a draft
    beside the 1.1.0 it patches (the other packages the update added are left out)."""
    for folder, state in RETIRED.items():

        def restore(data: dict[str, Any], state: dict[str, Any] = state) -> None:
            data.update(state)

        _package(tree / folder, restore)
    for folder in ADDED:
        if folder != "lumbar-rfa/1.1.1":
            shutil.rmtree(tree / folder)
    candidate = tree / "lumbar-rfa" / "1.1.1"

    def draft(data: dict[str, Any]) -> None:
        data.update(status="draft", default=False)
        del data["approved_by"], data["approved_on"]

    _package(candidate, draft)
    return candidate


def _post(app: Flask, path: str, body: dict[str, Any], who: str = "portal-a") -> Any:
    return app.test_client().post(path, json=body, headers=bearer(who))


def _decided(app: Flask, answers: dict[str, Any], **named: Any) -> tuple[str, str, str]:
    response = _post(app, "/v1/evaluate", {"answers": answers, **named})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    return data["ruleset"]["id"], data["ruleset"]["version"], data["outcome"]


def test_a_safety_patch_from_draft_to_retirement(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    tree = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, tree)
    candidate = _draft(tree)
    # A crash years ago, pain for over a year: 1.1.0 sends this person to the emergency room.
    crash = {**valid_answers, "rf_major_trauma": True}
    config = {"RULES_DIR": str(tree)}

    # Draft: loaded and checked, never used.
    with make_app(database_url, **config) as app:
        stored = {
            name: _post(app, "/v1/screenings", {"answers": answers}).get_json()["id"]
            for name, answers in [
                ("crash", crash),
                ("elsewhere", {**valid_answers, "pain_location": "other"}),
                ("plain", valid_answers),
            ]
        }
        named = {"ruleset": {"id": "lumbar-rfa", "version": "1.1.1"}}
        refused = _post(app, "/v1/evaluate", {"answers": crash, **named})
        assert refused.status_code == 422
        assert "draft" in refused.get_json()["errors"]["ruleset"][0]
        runner = app.test_cli_runner()
        check = runner.invoke(args=["rules", "check"])
        assert check.exit_code == 0, check.output
        assert "ruleset lumbar-rfa 1.1.1 (32 rules)" in check.output
        assert "; draft;" in check.output

        # Diff: the rules added, the trauma rule that changed, the label that changed.
        before = str(tree / "lumbar-rfa" / "1.1.0")
        diff = runner.invoke(args=["rules", "diff", before, str(candidate), "--format", "json"])
        report = json.loads(diff.output)
        assert {"earlier_major_trauma", "pain_outside_low_back", "discordant_blocks"} <= set(
            report["rules"]["added"]
        )
        changed = {c["id"]: {f["field"] for f in c["changes"]} for c in report["rules"]["changed"]}
        assert "condition" in changed["major_trauma"]
        assert "with_outcomes" in changed["imaging_on_record"]
        assert report["items"]["changed"] == []
        labels = [t for t in report["texts"] if t["id"] == "outcome discuss_with_specialist label"]
        assert labels[0]["to"] == "Discuss with a spine specialist"

        # Replay: the crash and the pain elsewhere would change; the plain screening not.
        replay = runner.invoke(args=["rules", "replay", str(candidate), "--format", "json"])
        assert replay.exit_code == 0, replay.output
        replayed = {c["id"]: c for c in json.loads(replay.output)["changes"]}
        assert set(replayed) == {stored["crash"], stored["elsewhere"]}
        assert (replayed[stored["crash"]]["from"], replayed[stored["crash"]]["to"]) == (
            "urgent_care",
            "see_primary_care",
        )
        assert replayed[stored["elsewhere"]]["decided_by_to"] == "pain_outside_low_back"

    # Shadow, once approved: decided as before, the candidate's outcome kept beside it.
    def shadow(data: dict[str, Any]) -> None:
        data.update(
            status="shadow", approved_by="Clinical safety officer", approved_on="2026-12-07"
        )

    _package(candidate, shadow)
    with make_app(database_url, **config) as app:
        created = _post(app, "/v1/screenings", {"answers": crash}).get_json()
        assert created["outcome"] == "urgent_care"
        assert "shadow" not in created
        view = app.test_client().get(f"/v1/screenings/{created['id']}", headers=bearer("dr-c"))
        [entry] = view.get_json()["shadow"]
        assert (entry["ruleset"]["version"], entry["outcome"]) == ("1.1.1", "see_primary_care")

    # Active and the default in place of 1.1.0: portals sending the same requests get it.
    _package(candidate, lambda data: data.update(status="active", default=True))
    _package(tree / "lumbar-rfa" / "1.1.0", lambda data: data.update(default=False))
    old = {"ruleset": {"id": "lumbar-rfa", "version": "1.1.0"}}
    with make_app(database_url, **config) as app:
        assert _decided(app, crash) == ("lumbar-rfa", "1.1.1", "see_primary_care")
        pinned = {"questionnaire": {"id": Q, "version": "1.1.0"}}
        assert _decided(app, crash, **pinned) == ("lumbar-rfa", "1.1.1", "see_primary_care")
        assert _decided(app, crash, **old) == ("lumbar-rfa", "1.1.0", "urgent_care")

    # Retired: refused when named, its screenings still read as they were worked out.
    _package(tree / "lumbar-rfa" / "1.1.0", lambda data: data.update(status="retired"))
    with make_app(database_url, **config) as app:
        refused = _post(app, "/v1/evaluate", {"answers": crash, **old})
        assert refused.status_code == 422
        assert "retired" in refused.get_json()["errors"]["ruleset"][0]
        kept = app.test_client().get(f"/v1/screenings/{stored['crash']}", headers=bearer("dr-c"))
        assert kept.status_code == 200
        assert (kept.get_json()["ruleset"]["version"], kept.get_json()["outcome"]) == (
            "1.1.0",
            "urgent_care",
        )
