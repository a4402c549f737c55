"""The reference apps ``make bench`` measures the service against.

A benchmark only means something if its references do what they say: the ceiling answers
as ``/healthz`` does, and the floor of a durable write stores each POST's document before
its 201, on both databases.
"""

from __future__ import annotations

import importlib
import json

import pytest
import sqlalchemy as sa

from tests.support.app import BOTH_DATABASES

# bench/ is a folder of scripts, not a package mypy reads as one: imported by name here,
# as gunicorn imports them (``bench.floor:create_app()`` from the project root).
bare = importlib.import_module("bench.bare")
floor = importlib.import_module("bench.floor")


def test_the_ceiling_answers_as_healthz_does() -> None:
    response = bare.create_app().test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


@BOTH_DATABASES
def test_the_floor_stores_a_screening_sized_document_per_post(
    database_url: str, monkeypatch: pytest.MonkeyPatch, valid_answers: dict[str, object]
) -> None:
    monkeypatch.setenv("FLOOR_DATABASE_URL", database_url)
    app = floor.create_app()
    client = app.test_client()
    body = {"answers": valid_answers, "patient_ref": "MRN-1"}
    ids = []
    for _ in range(3):
        response = client.post("/write", json=body)
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
    assert len(set(ids)) == 3

    # Read back on a connection of its own: committed, not only in the app's transaction.
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, body FROM floor_writes WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            ).all()
    finally:
        engine.dispose()
        app.extensions["floor_store"].engine.dispose()
    assert sorted(row.id for row in rows) == sorted(ids)
    for row in rows:
        # A stored result as the service writes one: the same size class, the same shape.
        assert len(row.body) > 5000
        assert {"outcome", "decided_by", "summary"} <= set(json.loads(row.body))
