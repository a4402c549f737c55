"""A rule change as README "Changing the rules" walks it: draft, diff, replay, shadow,
approve and activate beside the old version, retire. Every step on a copy of ``rules/``."""

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
    """The README's step 1: lumbar-rfa 1.2.0, a draft whose pain threshold is 6 of 10."""
    folder = tree / "lumbar-rfa" / "1.2.0"
    shutil.copytree(tree / "lumbar-rfa" / "1.1.0", folder)
    _edit(
        folder / "ruleset.yaml",
        ("version: 1.1.0\ntitle:", "version: 1.2.0\ntitle:"),
        ("title: Pain intensity below 5 of 10", "title: Pain intensity below 6 of 10"),
        ("{item: pain_intensity, less_than: 5}", "{item: pain_intensity, less_than: 6}"),
    )
    _edit(
        folder / "i18n" / "es.yaml",
        ("ruleset: {id: lumbar-rfa, version: 1.1.0}", "ruleset: {id: lumbar-rfa, version: 1.2.0}"),
    )
    _edit(
        folder / "cases.yaml",
        ("answers: {pain_intensity: 5}", "answers: {pain_intensity: 6}"),
        ("answers: {pain_intensity: 4}", "answers: {pain_intensity: 5}"),
    )

    def draft(data: dict[str, Any]) -> None:
        data.update(status="draft", default=False)
        del data["approved_by"], data["approved_on"]
        change = "Pain intensity must now be 6 of 10 or more, not 5."
        data["changelog"].insert(0, {"version": "1.2.0", "date": "2026-12-02", "changes": [change]})

    _package(folder, draft)
    return folder


def _post(app: Flask, path: str, body: dict[str, Any], who: str = "portal-a") -> Any:
    return app.test_client().post(path, json=body, headers=bearer(who))


def _decided(app: Flask, answers: dict[str, Any], **named: Any) -> tuple[str, str, str]:
    response = _post(app, "/v1/evaluate", {"answers": answers, **named})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    return data["ruleset"]["id"], data["ruleset"]["version"], data["outcome"]


def test_a_threshold_change_from_draft_to_retirement(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    tree = tmp_path / "rules"
    shutil.copytree(RULES_ROOT, tree)
    candidate = _draft(tree)
    pain5 = {**valid_answers, "pain_intensity": 5}
    config = {"RULES_DIR": str(tree)}

    # Draft: loaded and checked, never used.
    with make_app(database_url, **config) as app:
        stored = {
            pain: _post(
                app, "/v1/screenings", {"answers": {**valid_answers, "pain_intensity": p}}
            ).get_json()["id"]
            for pain, p in [("low", 3), ("five", 5), ("high", 8)]
        }
        refused = _post(
            app,
            "/v1/evaluate",
            {"answers": pain5, "ruleset": {"id": "lumbar-rfa", "version": "1.2.0"}},
        )
        assert refused.status_code == 422
        assert "draft" in refused.get_json()["errors"]["ruleset"][0]
        runner = app.test_cli_runner()
        check = runner.invoke(args=["rules", "check"])
        assert check.exit_code == 0, check.output
        assert "ruleset lumbar-rfa 1.2.0 (24 rules)" in check.output
        assert "; draft;" in check.output

        # Diff: the threshold and its title, nothing else.
        before = str(tree / "lumbar-rfa" / "1.1.0")
        diff = runner.invoke(args=["rules", "diff", before, str(candidate), "--format", "json"])
        report = json.loads(diff.output)
        [changed] = report["rules"]["changed"]
        assert changed["id"] == "pain_below_threshold"
        assert {c["field"] for c in changed["changes"]} == {"condition", "title"}
        assert report["items"]["changed"] == report["texts"] == []

        # Replay: exactly the screening with pain 5 of 10 would change.
        replay = runner.invoke(args=["rules", "replay", str(candidate), "--format", "json"])
        assert replay.exit_code == 0, replay.output
        replayed = json.loads(replay.output)
        assert [c["id"] for c in replayed["changes"]] == [stored["five"]]
        assert replayed["changes"][0]["to"] == "continue_conservative_care"

    # Shadow, once approved: decided as before, the candidate's outcome kept beside it.
    def shadow(data: dict[str, Any]) -> None:
        data.update(
            status="shadow", approved_by="Clinical safety officer", approved_on="2026-12-02"
        )

    _package(candidate, shadow)
    with make_app(database_url, **config) as app:
        created = _post(app, "/v1/screenings", {"answers": pain5}).get_json()
        assert created["outcome"] == "discuss_with_specialist"
        assert "shadow" not in created
        view = app.test_client().get(f"/v1/screenings/{created['id']}", headers=bearer("dr-c"))
        [entry] = view.get_json()["shadow"]
        assert (entry["ruleset"]["version"], entry["outcome"]) == (
            "1.2.0",
            "continue_conservative_care",
        )

    # Active and the default, beside 1.1.0; a portal pinned to questionnaire 1.0.0 keeps working.
    _package(candidate, lambda data: data.update(status="active", default=True))
    _package(tree / "lumbar-rfa" / "1.1.0", lambda data: data.update(default=False))
    with make_app(database_url, **config) as app:
        assert _decided(app, pain5) == ("lumbar-rfa", "1.2.0", "continue_conservative_care")
        pinned = {"questionnaire": {"id": Q, "version": "1.0.0"}}
        assert _decided(app, pain5, **pinned) == ("lumbar-rfa", "1.0.0", "discuss_with_specialist")
        named = {"ruleset": {"id": "lumbar-rfa", "version": "1.1.0"}}
        assert _decided(app, pain5, **named) == ("lumbar-rfa", "1.1.0", "discuss_with_specialist")
        assert app.test_client().get("/v1/questionnaire").get_json()["version"] == "1.1.0"

    # Retired: refused when named, its screenings still read as they were worked out.
    _package(tree / "lumbar-rfa" / "1.1.0", lambda data: data.update(status="retired"))
    with make_app(database_url, **config) as app:
        refused = _post(app, "/v1/evaluate", {"answers": pain5, **named})
        assert refused.status_code == 422
        assert "retired" in refused.get_json()["errors"]["ruleset"][0]
        old = app.test_client().get(f"/v1/screenings/{stored['five']}", headers=bearer("dr-c"))
        assert old.status_code == 200
        assert (old.get_json()["ruleset"]["version"], old.get_json()["outcome"]) == (
            "1.1.0",
            "discuss_with_specialist",
        )
