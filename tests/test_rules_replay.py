"""``flask --app screening rules replay CANDIDATE``: which past screenings would change."""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from screening.storage.store import Store
from screening.storage.tables import screenings
from tests.support.app import BOTH_DATABASES
from tests.support.app import RULES_ROOT
from tests.support.app import bearer
from tests.support.app import make_app
from tests.test_rules_diff import candidate


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
        assert report["candidate"]["version"] == "1.3.0"
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


@BOTH_DATABASES
@pytest.mark.parametrize("batch", [1, 2, 3, 5000])
def test_the_keyset_batches_read_every_screening_once_oldest_first(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any], batch: int
) -> None:
    made = []
    for _ in range(7):
        response = client.post(
            "/v1/screenings", json={"answers": valid_answers}, headers=bearer("dr-c")
        )
        made.append(response.get_json()["id"])
    # Stored a second apart, but the middle four in the same microsecond: the id orders
    # those, and a batch may end among them.
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    seconds = [0, 1, 2, 2, 2, 2, 3]
    with store.engine.begin() as conn:
        for screening_id, second in zip(made, seconds, strict=True):
            moment = start + timedelta(seconds=second)
            conn.execute(
                screenings.update().where(screenings.c.id == screening_id).values(created_at=moment)
            )
    rows = list(store.screenings.replay_rows(("lumbar-rfa-screening", "1.2.0"), batch=batch))
    assert [r[0] for r in rows] == made[:2] + sorted(made[2:6]) + made[6:]
    assert all(r[1] == valid_answers for r in rows)
    assert {(r[2], r[3]) for r in rows} == {
        ("discuss_with_specialist", "meets_discussion_criteria")
    }
    window = store.screenings.replay_rows(
        ("lumbar-rfa-screening", "1.2.0"),
        since=start + timedelta(seconds=2),
        until=start + timedelta(seconds=3),
        batch=batch,
    )
    assert [r[0] for r in window] == sorted(made[2:6])


@BOTH_DATABASES
def test_a_new_questionnaires_candidate_replays_the_earlier_answers_that_suffice(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    """--answers-of: before its questionnaire is served, a candidate is read against the
    answers of the version before it; those that lack what it asks are counted, by item."""
    q110 = {"id": "lumbar-rfa-screening", "version": "1.1.0"}
    with make_app(database_url) as app:
        client = app.test_client()

        def store(answers: dict[str, Any], **named: Any) -> str:
            body = {"answers": answers, "questionnaire": q110, **named}
            response = client.post("/v1/screenings", json=body, headers=bearer("dr-c"))
            assert response.status_code == 201, response.get_json()
            return str(response.get_json()["id"])

        elsewhere = store({**valid_answers, "pain_location": "other"})
        store(valid_answers)
        # 1.2.0 asks when a crash was: these answers cannot be read against it.
        store({**valid_answers, "rf_major_trauma": True})
        cms = store({**valid_answers, "pain_location": "other"}, ruleset={"id": "lumbar-rfa-cms"})
        runner = app.test_cli_runner()
        candidate = str(RULES_ROOT / "lumbar-rfa" / "1.2.0")
        plain = json.loads(
            runner.invoke(args=["rules", "replay", candidate, "--format", "json"]).output
        )
        assert plain["screenings"] == 0
        args = ["rules", "replay", candidate, "--answers-of", "1.1.0", "--format", "json"]
        report = json.loads(runner.invoke(args=args).output)
        assert report["screenings"] == 3
        assert report["not_replayed"] == {"count": 1, "items": {"major_trauma_when": 1}}
        # Every stored screening of 1.1.0 was decided by 1.1.1 (or the CMS profile): the
        # pain elsewhere is decided the same way, so nothing changes but the profile's.
        assert {c["id"] for c in report["changes"]} <= {cms}
        # --decided-by leaves the other profile's screenings out.
        only = json.loads(runner.invoke(args=[*args, "--decided-by", "lumbar-rfa"]).output)
        assert only["screenings"] == 2 and only["changed"] == 0
        assert elsewhere not in {c["id"] for c in only["changes"]}
        text = runner.invoke(args=["rules", "replay", candidate, "--answers-of", "1.1.0"])
        assert (
            "1 not replayed: the candidate's questionnaire needs answers they lack" in text.output
        )
        assert "(major_trauma_when: 1)" in text.output
