"""The request path's inserts (``Store.insert_rows``, SQLAlchemy's executemany): what a
missing or unstorable value does, what a failing write in a shared group-commit batch
takes back, and errors with nothing of the row in them."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from sqlalchemy.engine import Connection

from screening.storage import tables
from screening.storage.database import make_engine
from screening.storage.groupcommit import GroupCommit
from screening.storage.groupcommit import _Write
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import bearer

# Not UTC on purpose: a stored time must come back as the same instant, in UTC.
ELSEWHERE = timezone(timedelta(hours=-5))
WHEN = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=ELSEWHERE)

ROWS: dict[str, dict[str, Any]] = {
    "screenings": {
        "id": "a" * 32,
        "created_at": WHEN,
        "created_by": "portal-a",
        "patient_ref": None,
        "language": "es",
        "questionnaire_id": "lumbar-rfa",
        "questionnaire_version": "1.1.0",
        "questionnaire_sha256": "1" * 64,
        "ruleset_id": "lumbar-rfa",
        "ruleset_version": "1.1.0",
        "ruleset_sha256": "2" * 64,
        "outcome": "urgent",
        "review_status": "pending",
        "answers": {"pain_months": 7, "tried": ["physical_therapy"], "note": "¿dolor? ✓"},
        "result": {"outcome": "urgent", "trace": [{"rule": "r1", "matched": True}], "x": None},
        "source": None,
        "answers_sha256": "3" * 64,
    },
    "audit_log": {"at": WHEN, "actor": "portal-a", "action": "create", "screening_id": None},
}


def _empty_database(path: Path) -> Iterator[sa.Engine]:
    """An empty SQLite database at ``path`` with the service's tables."""
    engine = make_engine(f"sqlite:///{path}")
    tables.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty SQLite database with the service's tables."""
    yield from _empty_database(tmp_path / "driver.db")


def test_a_column_missing_from_a_row_is_null_and_a_required_one_is_refused(
    engine: sa.Engine,
) -> None:
    store = Store(engine)
    with engine.begin() as conn:
        store.insert_rows(
            conn, tables.audit_log, [{"at": WHEN, "actor": "dr-c", "action": "review"}]
        )
    with engine.connect() as conn:
        assert conn.execute(sa.select(tables.audit_log.c.screening_id)).scalar_one() is None
    with pytest.raises(sa.exc.IntegrityError) as refused, engine.begin() as conn:
        store.insert_rows(conn, tables.audit_log, [{"at": WHEN, "actor": "a-secret-actor-name"}])
    # SQLAlchemy's error, with the statement but never the row's values.
    assert "NOT NULL" in str(refused.value)
    assert "a-secret-actor-name" not in str(refused.value)


def test_a_value_its_type_cannot_store_is_sqlalchemys_error_without_the_row(
    engine: sa.Engine,
) -> None:
    row = {**ROWS["screenings"], "answers": {"pain_months": {7}}, "patient_ref": "MRN-4411"}
    store = Store(engine)
    with pytest.raises(sa.exc.StatementError) as refused, engine.begin() as conn:
        store.insert_rows(conn, tables.screenings, [row])
    # What SQLAlchemy's own INSERT raises for it, so `except SQLAlchemyError` holds.
    assert isinstance(refused.value, sa.exc.SQLAlchemyError)
    assert "MRN-4411" not in str(refused.value)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.screenings)).scalar() == 0


def test_a_write_that_fails_in_a_shared_batch_takes_only_its_own_rows_back(
    engine: sa.Engine,
) -> None:
    store = Store(engine)

    def write(actor: str, fail: bool) -> Callable[[Connection], str]:
        def work(conn: Connection) -> str:
            store.insert_rows(conn, tables.audit_log, [{**ROWS["audit_log"], "actor": actor}])
            if fail:
                raise RuntimeError("this write fails after its insert")
            return actor

        return work

    # One batch, as group commit makes of writes arriving together: each in a savepoint.
    batch = [
        _Write(write("first", False)),
        _Write(write("second", True)),
        _Write(write("third", False)),
    ]
    GroupCommit(store.transaction)._commit(batch)
    assert [w.value for w in batch] == ["first", None, "third"]
    assert isinstance(batch[1].error, RuntimeError)
    with engine.connect() as conn:
        actors = conn.execute(sa.select(tables.audit_log.c.actor).order_by("id")).scalars()
        assert list(actors) == ["first", "third"]


@BOTH_DATABASES
def test_a_screening_stored_twice_fails_alone_and_changes_nothing(
    client: FlaskClient, store: Store, valid_answers: dict[str, Any]
) -> None:
    created = client.post(
        "/v1/screenings", json={"answers": valid_answers}, headers=bearer("portal-a")
    )
    assert created.status_code == 201
    stored = store.screenings.get(created.get_json()["id"])
    assert stored is not None
    audit_before = store.audit.entries()
    with pytest.raises(sa.exc.IntegrityError) as refused:
        store.screenings.insert(replace(stored, patient_ref="MRN-must-not-leak"))
    assert "MRN-must-not-leak" not in str(refused.value)
    again = store.screenings.get(stored.id)
    assert again is not None and again.patient_ref == stored.patient_ref
    assert store.audit.entries() == audit_before
