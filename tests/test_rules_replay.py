"""``flask --app screening rules replay CANDIDATE``: which past screenings would change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.replay import decide
from screening.rules.rulebook import load_rules
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import RULES_ROOT
from tests.support.app import bearer
from tests.support.app import make_app
from tests.test_rules_diff import candidate


def test_decide_gives_what_the_engine_gives_on_every_case_of_every_package() -> None:
    checked = 0
    for package in load_rules(RULES_ROOT).sorted_packages():
        for case in load_cases(package):
            answers, errors = package.questionnaire.validate(case.answers)
            if errors:
                continue
            result = evaluate(answers, package.ruleset)
            assert decide(answers, package.ruleset) == (result["outcome"], result["decided_by"])
            checked += 1
    assert checked > 150


@BOTH_DATABASES
def test_replay_names_exactly_the_screenings_that_would_change_and_stores_nothing(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    with make_app(database_url) as app:
        client = app.test_client()
        ids: dict[int, list[str]] = {}
        for pain in (4, 5, 5, 7, 9):
            body = {"answers": {**valid_answers, "pain_intensity": pain}}
            created = client.post("/v1/screenings", json=body, headers=bearer("dr-c")).get_json()
            ids.setdefault(pain, []).append(created["id"])
        # A screening of questionnaire 1.0.0 is not the candidate's: never replayed.
        old = {
            "answers": valid_answers,
            "questionnaire": {"id": "lumbar-rfa-screening", "version": "1.0.0"},
        }
        client.post("/v1/screenings", json=old, headers=bearer("dr-c"))
        before = client.get("/v1/screenings?limit=50", headers=bearer("dr-c")).get_json()

        runner = app.test_cli_runner()
        folder = str(candidate(tmp_path))
        result = runner.invoke(args=["rules", "replay", folder, "--format", "json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["candidate"]["id"] == "lumbar-rfa"
        assert report["candidate"]["version"] == "1.2.0"
        assert report["screenings"] == 5
        assert report["changed"] == 2
        assert sorted(c["id"] for c in report["changes"]) == sorted(ids[5])
        for change in report["changes"]:
            assert change["from"] == "discuss_with_specialist"
            assert change["to"] == "continue_conservative_care"
            assert change["decided_by_to"] == "pain_below_threshold"
        transitions = {(t["from"], t["to"]): t["count"] for t in report["transitions"]}
        assert transitions == {
            ("continue_conservative_care", "continue_conservative_care"): 1,
            ("discuss_with_specialist", "continue_conservative_care"): 2,
            ("discuss_with_specialist", "discuss_with_specialist"): 2,
        }

        text = runner.invoke(args=["rules", "replay", folder])
        assert text.exit_code == 0, text.output
        assert "5 screenings replayed, 2 would change." in text.output
        for screening_id in ids[5]:
            assert screening_id in text.output

        window = runner.invoke(
            args=["rules", "replay", folder, "--since", "2999-01-01", "--format", "json"]
        )
        assert json.loads(window.output)["screenings"] == 0

        after = client.get("/v1/screenings?limit=50", headers=bearer("dr-c")).get_json()
        assert after == before


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_the_keyset_batches_read_every_screening_once(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any], batch: int
) -> None:
    made = set()
    for _ in range(5):
        response = client.post(
            "/v1/screenings", json={"answers": valid_answers}, headers=bearer("dr-c")
        )
        made.add(response.get_json()["id"])
    rows = list(store.replay_rows(("lumbar-rfa-screening", "1.1.0"), batch=batch))
    assert sorted(r[0] for r in rows) == sorted(made)
