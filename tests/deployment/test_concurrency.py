"""Identical requests racing on a real gunicorn server store exactly one screening."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.app import API_KEYS
from tests.support.app import BOTH_DATABASES
from tests.support.server import gunicorn
from tests.support.server import race_posts

pytestmark = BOTH_DATABASES
RACERS = 16


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """The service under gunicorn (3 workers x 4 threads) on a fresh database."""
    env = {
        "SCREENING_DATABASE_URL": database_url,
        "SCREENING_API_KEYS": API_KEYS,
        "SCREENING_RATE_LIMIT": "",
    }
    with gunicorn(env, tmp_path / "gunicorn.log") as base:
        yield base


def count_screenings(database_url: str) -> int:
    """Screenings in the database, counted behind the server's back."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM screenings")).scalar_one())
    finally:
        engine.dispose()


def test_identical_requests_store_one_screening(
    server: str, database_url: str, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers, "patient_ref": "MRN-race"}
    for round_number in range(3):
        responses = race_posts([(server, body, f"race-{round_number}")] * RACERS)
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 409}, statuses
        fresh = [
            r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers
        ]
        replays = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
        assert len(fresh) == 1, statuses
        assert all(r.content == fresh[0].content for r in replays)
        assert count_screenings(database_url) == round_number + 1
    # Once the first is done, every retry replays it.
    retry = race_posts([(server, body, "race-0")] * 4)
    assert {r.headers.get("Idempotent-Replayed") for r in retry} == {"true"}
    assert count_screenings(database_url) == 3


def test_distinct_keys_racing_all_store(
    server: str, database_url: str, valid_answers: dict[str, Any]
) -> None:
    body = {"answers": valid_answers}
    responses = race_posts([(server, body, f"distinct-{n}") for n in range(RACERS)])
    assert [r.status_code for r in responses] == [201] * RACERS
    assert len({r.json()["id"] for r in responses}) == RACERS
    assert count_screenings(database_url) == RACERS
