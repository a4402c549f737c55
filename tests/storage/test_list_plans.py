"""Every list query reads the screenings table by an index, on both databases.

The statements are the ones the store really sends (caught as they go to the driver) for
every filter in both orders, a second page by cursor, and the overdue gauge and scan. Each
is EXPLAINed over a small table with the planner told to prefer indexes as it would at
scale: PostgreSQL with sequential scans off, SQLite with the statistics ANALYZE gave a
table of a million screenings. A filter or order added later without an index it can use
fails here, whatever the size of the test's table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from screening.storage.lists import ListFilters
from screening.storage.lists import TriageOrder
from screening.storage.outbox import Outbox
from screening.storage.store import Store
from tests.support.app import BOTH_DATABASES
from tests.support.app import app_store
from tests.support.app import base_answers
from tests.support.app import bearer

pytestmark = BOTH_DATABASES

TRIAGE = TriageOrder(urgent=("urgent_care",), see_doctor=("see_primary_care",))
#: ANALYZE's statistics of a database of 1,000,000 screenings (bench/fill.py's mix).
SQLITE_STATISTICS = {
    "ix_screenings_created_at_id": "1000000 1 1",
    "ix_screenings_outcome_created_at_id": "1000000 250000 1 1",
    "ix_screenings_review_status_created_at_id": "1000000 500000 1 1",
    "ix_screenings_patient_ref": "1000000 4",
    "ix_screenings_answers_sha256": "1000000 1000",
    "ix_screenings_ruleset_id_ruleset_version_created_at_id": "1000000 330000 250000 1 1",
    "ix_screenings_review_status_outcome_created_at_id": "1000000 500000 125000 1 1",
    "ix_screenings_ruleset_id_created_at_id": "1000000 330000 1 1",
    "sqlite_autoindex_screenings_1": "1000000 1",
}
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _reads() -> Iterator[tuple[str, ListFilters]]:
    yield "all", ListFilters()
    yield "outcome", ListFilters(outcome="urgent_care")
    yield "review_status", ListFilters(review_status="pending")
    yield "patient_ref", ListFilters(patient_ref="MRN-1")
    yield "created range", ListFilters(created_from=NOW - timedelta(days=30), created_to=NOW)
    yield "ruleset", ListFilters(ruleset_id="lumbar-rfa-cms")
    yield "ruleset and version", ListFilters(ruleset_id="lumbar-rfa", ruleset_version="1.2.0")
    yield "pending, one outcome", ListFilters(review_status="pending", outcome="see_primary_care")


@pytest.fixture
def store(app: Flask) -> Store:
    """The app's store holding a few screenings of each kind."""
    client = app.test_client()
    for changes in ({}, {"rf_fever": True}, {"rf_cancer_history": True}, {"pain_intensity": 2}):
        body = {"answers": {**base_answers(), **changes}, "patient_ref": "MRN-1"}
        response = client.post("/v1/screenings", json=body, headers=bearer("dr-c"))
        assert response.status_code == 201
    return app_store(app)


def _statements(store: Store, read: Any) -> list[tuple[str, Any]]:
    """The statements ``read(store)`` sends to the database."""
    sent: list[tuple[str, Any]] = []

    def remember(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", remember)
    try:
        read(store)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", remember)
    assert sent
    return sent


def _plan(store: Store, statement: str, parameters: Any) -> str:
    """The plan of one statement, the planner told to prefer indexes as at scale."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
            plan = "\n".join(row[0] for row in rows)
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl = 'screenings'")
            for index, stat in SQLITE_STATISTICS.items():
                conn.exec_driver_sql(
                    "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('screenings', ?, ?)",
                    (index, stat),
                )
            conn.commit()
            # A new connection reads the statistics afresh.
            with store.engine.connect() as fresh:
                fresh.exec_driver_sql("ANALYZE sqlite_schema")
                rows = fresh.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
                plan = "\n".join(str(row[-1]) for row in rows)
        conn.rollback()
    return plan


def scans_the_table(plan: str) -> bool:
    """Whether a plan reads the whole screenings table (or a whole index of it) when the
    page needs only its first rows: a scan row by row, or a full scan whose rows are then
    sorted. A full index scan in the order asked for stops after the page's rows."""
    if "Seq Scan on screenings" in plan or re.search(r"\bSCAN screenings\b(?! USING)", plan):
        return True
    if "USE TEMP B-TREE FOR ORDER BY" in plan and re.search(r"\bSCAN screenings\b", plan):
        return True
    # PostgreSQL: a Sort above a scan of screenings that has no Index Cond (reads it all).
    nodes = re.split(r"\n\s*->\s*", plan)
    sorts = any(node.lstrip().startswith(("Sort", "Incremental Sort")) for node in nodes)
    whole = [
        node
        for node in nodes
        if re.match(r"\s*(Index|Index Only|Bitmap Heap) Scan.* on screenings", node)
        and "Index Cond" not in node
        and "Recheck Cond" not in node
    ]
    return sorts and bool(whole)


@pytest.mark.parametrize("triage", [False, True], ids=["newest", "triage"])
@pytest.mark.parametrize(("label", "filters"), list(_reads()), ids=[r[0] for r in _reads()])
def test_every_list_reads_by_an_index(
    store: Store, label: str, filters: ListFilters, triage: bool
) -> None:
    order = TRIAGE if triage else None
    first = _statements(store, lambda s: s.screenings.page(filters, 1, None, order))
    # The next page, from a cursor: in triage order it starts in each band in turn.
    rows, _ = store.screenings.page(ListFilters(), 1, None, order)
    cursors: list[Any] = []
    if rows:
        row = rows[0]
        moment, screening_id = row.created_at, row.id
        cursors = (
            [(band, moment, screening_id) for band in (0, 1, 2)]
            if triage
            else [(moment, screening_id)]
        )
    later = [
        statement
        for after in cursors
        for statement in _statements(
            store, lambda s, a=after: s.screenings.page(filters, 1, a, order)
        )
    ]
    for statement, parameters in first + later:
        plan = _plan(store, statement, parameters)
        assert not scans_the_table(plan), f"{label}: {statement}\n{plan}"


def test_the_overdue_gauge_and_scan_read_by_an_index(store: Store) -> None:
    outbox = Outbox(store)
    cutoff = NOW - timedelta(hours=1)
    reads = _statements(store, lambda s: outbox.count_overdue(("urgent_care",), cutoff))
    reads += _statements(
        store, lambda s: outbox.notice_overdue(("urgent_care",), cutoff, NOW, lambda row: [])
    )
    for statement, parameters in reads:
        plan = _plan(store, statement, parameters)
        assert not scans_the_table(plan), f"{statement}\n{plan}"


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT id FROM screenings WHERE language = 'en' ORDER BY language",
        # The triage order as one query over a CASE of the bands, which no index supplies.
        "SELECT id FROM screenings ORDER BY CASE WHEN review_status = 'pending' AND "
        "outcome = 'urgent_care' THEN 0 ELSE 1 END, created_at, id LIMIT 51",
    ],
    ids=["no index", "triage over a CASE"],
)
def test_the_check_catches_a_query_no_index_serves(store: Store, statement: str) -> None:
    plan = _plan(store, statement, {})
    assert scans_the_table(plan), plan
