"""Shadow evaluation (rules-lifecycle-v1.md): stored beside the result, shown to clinicians
only, counted when it disagrees, and never able to fail a request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import screening.services.screenings as screenings
from screening.rules import engine
from screening.rules.results import EngineResult
from tests.support.app import BOTH_DATABASES
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.app import shadow_tree

pytestmark = BOTH_DATABASES


def _disagreements() -> float:
    value = REGISTRY.get_sample_value(
        "screening_shadow_disagreements_total", {"ruleset": "lumbar-rfa", "version": "1.3.0"}
    )
    return value or 0.0


def test_a_shadow_result_is_stored_shown_to_clinicians_and_counted(
    database_url: str, tmp_path: Path, valid_answers: dict[str, Any]
) -> None:
    answers = {**valid_answers, "pain_intensity": 6}
    with make_app(database_url, RULES_DIR=str(shadow_tree(tmp_path))) as app:
        client = app.test_client()
        before = _disagreements()
        created = client.post(
            "/v1/screenings", json={"answers": answers}, headers=bearer("dr-c")
        ).get_json()
        assert created["ruleset"]["version"] == "1.2.0"
        [shadow] = created["shadow"]
        assert (shadow["ruleset"]["id"], shadow["ruleset"]["version"]) == ("lumbar-rfa", "1.3.0")
        assert shadow["outcome"] == "continue_conservative_care"
        assert shadow["decided_by"] == "pain_below_threshold"
        assert created["outcome"] != shadow["outcome"]
        assert _disagreements() == before + 1
        read = client.get(f"/v1/screenings/{created['id']}", headers=bearer("dr-c")).get_json()
        assert read["shadow"] == created["shadow"]
        portal = client.get(f"/v1/screenings/{created['id']}", headers=bearer("portal-a"))
        assert "shadow" not in portal.get_json()
        assert "1.3.0" not in portal.get_data(as_text=True)
        # Agreeing with the default is stored too, and not counted.
        agreed = client.post(
            "/v1/screenings",
            json={"answers": {**answers, "pain_intensity": 8}},
            headers=bearer("dr-c"),
        ).get_json()
        assert agreed["shadow"][0]["outcome"] == agreed["outcome"]
        assert _disagreements() == before + 1
        # The questionnaire 1.0.0 has no shadow package: an empty list.
        old = client.post(
            "/v1/evaluate",
            json={
                "answers": valid_answers,
                "questionnaire": {"id": "lumbar-rfa-screening", "version": "1.0.0"},
            },
            headers=bearer("dr-c"),
        ).get_json()
        assert old["shadow"] == []


def test_a_failing_shadow_never_fails_the_request(
    database_url: str,
    tmp_path: Path,
    valid_answers: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = engine.evaluate

    def broken_for_the_shadow(
        answers: dict[str, Any], ruleset: Any, texts: Any = None
    ) -> EngineResult:
        if ruleset.version == "1.3.0":
            raise RuntimeError("a broken shadow ruleset")
        return real(answers, ruleset, texts)

    monkeypatch.setattr(screenings, "evaluate", broken_for_the_shadow)
    with make_app(database_url, RULES_DIR=str(shadow_tree(tmp_path))) as app:
        response = app.test_client().post(
            "/v1/screenings", json={"answers": valid_answers}, headers=bearer("dr-c")
        )
        assert response.status_code == 201
        assert response.get_json()["shadow"] == []
