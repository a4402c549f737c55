"""Scale: ``make bench``. Every read path a clinician uses, at 1,000 and at 1,000,000 rows.

For SQLite and for PostgreSQL, at each size: a fresh database filled by ``bench/fill.py``
(issue 26's mix: 1% urgent, 5% see-own-doctor, about 10% pending, 250,000 patients, three
years), the service under gunicorn with the project's settings, and one client timing
each list and page a clinician uses: newest first and in triage order, each filter in both
orders, a deep page by cursor, ``/review/`` in both orders and its pending triage, a detail
page and ``/metrics``; then, in process, the webhook worker's overdue scan. Each is the
median of 5 requests after one to warm up. It prints the EXPLAIN plan of each list query
(and whether it reads the screenings table by an index), then the table: each read at
both sizes, the ratio, and whether it meets issue 26's targets (50 ms at the large size,
and no more than twice its small-size time). The machine is shared: compare ratios and
rerun a miss before believing it.

    python bench/scale.py [--screenings 1000000] [--small 1000] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
import sqlalchemy as sa

# Run as a script: its own folder is on sys.path, as for load.py and replay.py.
from fill import Filled
from fill import fill
from load import _drop_schema
from load import _postgres_database
from load import _serve
from load import _stop

from screening.services.cursors import encode_cursor
from screening.services.cursors import encode_triage_cursor
from screening.services.delivery import OVERDUE_RESCAN
from screening.services.keys import new_token
from screening.services.keys import token_digest
from screening.storage.database import make_engine
from screening.storage.lists import ListFilters
from screening.storage.lists import TriageOrder
from screening.storage.outbox import Outbox
from screening.storage.store import Store

TIMES = 5
TARGET_MS = 50.0
TARGET_RATIO = 2.0
TRIAGE = TriageOrder(urgent=("urgent_care",), see_doctor=("see_primary_care",))
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _median_ms(call: Callable[[], Any]) -> float:
    call()
    times = []
    for _ in range(TIMES):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def _reads(filled: Filled) -> dict[str, tuple[str, ListFilters, bool]]:
    """Each list a clinician reads: label -> (API query, the store's filters, triage)."""
    month = filled.middle - timedelta(days=30)
    lists: dict[str, tuple[dict[str, str], ListFilters]] = {
        "all": ({}, ListFilters()),
        "outcome=urgent_care": ({"outcome": "urgent_care"}, ListFilters(outcome="urgent_care")),
        "outcome=discuss_with_specialist": (
            {"outcome": "discuss_with_specialist"},
            ListFilters(outcome="discuss_with_specialist"),
        ),
        "review_status=pending": (
            {"review_status": "pending"},
            ListFilters(review_status="pending"),
        ),
        "review_status=reviewed": (
            {"review_status": "reviewed"},
            ListFilters(review_status="reviewed"),
        ),
        "patient_ref": (
            {"patient_ref": filled.patient_ref},
            ListFilters(patient_ref=filled.patient_ref),
        ),
        "created_from/to (a month)": (
            {"created_from": month.isoformat(), "created_to": filled.middle.isoformat()},
            ListFilters(created_from=month, created_to=filled.middle),
        ),
        "ruleset=lumbar-rfa-cms": (
            {"ruleset": "lumbar-rfa-cms"},
            ListFilters(ruleset_id="lumbar-rfa-cms"),
        ),
        "ruleset=lumbar-rfa, version 1.1.1": (
            {"ruleset": "lumbar-rfa", "ruleset_version": "1.1.1"},
            ListFilters(ruleset_id="lumbar-rfa", ruleset_version="1.1.1"),
        ),
    }
    reads: dict[str, tuple[str, ListFilters, bool]] = {}
    for label, (query, filters) in lists.items():
        for triage in (False, True):
            params = {**query, **({"sort": "triage"} if triage else {})}
            name = f"{label}, {'triage' if triage else 'newest'}"
            reads[name] = (f"/v1/screenings?{urlencode(params)}", filters, triage)
    deep = encode_cursor(filled.middle, filled.screening_id)
    reads["deep page by cursor, newest"] = (
        f"/v1/screenings?cursor={deep}",
        ListFilters(),
        False,
    )
    deep_triage = encode_triage_cursor(2, filled.middle, filled.screening_id)
    reads["deep page by cursor, triage"] = (
        f"/v1/screenings?sort=triage&cursor={deep_triage}",
        ListFilters(),
        True,
    )
    return reads


def _sign_in(base: str, token: str) -> requests.Session:
    """A review-pages session signed in with the clinician token."""
    session = requests.Session()
    page = session.get(f"{base}/review/login", timeout=30)
    found = _CSRF.search(page.text)
    assert found is not None, "no CSRF token on the sign-in page"
    done = session.post(
        f"{base}/review/login", data={"token": token, "csrf_token": found.group(1)}, timeout=30
    )
    assert done.ok, done.status_code
    return session


#: Each page of the review pages timed, by label.
PAGES = {
    "/review/ newest": "/review/",
    "/review/ triage": "/review/?sort=triage",
    "/review/ pending, triage": "/review/?review_status=pending&sort=triage",
}


def _rows(response: requests.Response) -> int:
    """How many screenings a list page holds (JSON or HTML)."""
    if response.headers.get("Content-Type", "").startswith("application/json"):
        return len(response.json()["items"])
    return response.text.count('<li class="screening ')


def _time_http(
    base: str, filled: Filled, token: str, metrics: str, rows_of: dict[str, int] | None
) -> tuple[dict[str, float], dict[str, int]]:
    """Each read's median time and how many rows its page held. Given ``rows_of`` (the
    small table's page sizes), each page that held fewer rows there is timed again here
    with that many, so the two sizes also compare on pages of equal work."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    pages = _sign_in(base, token)
    times: dict[str, float] = {}
    rows: dict[str, int] = {}

    def get(session: requests.Session, path: str, **headers: str) -> requests.Response:
        response = session.get(f"{base}{path}", headers=headers, timeout=120)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response

    lists = {f"GET /v1/screenings: {k}": (api, v[0]) for k, v in _reads(filled).items()}
    lists.update({label: (pages, path) for label, path in PAGES.items()})
    for label, (session, path) in lists.items():
        times[label] = _median_ms(partial(get, session, path))
        rows[label] = _rows(get(session, path))
        if rows_of is not None and rows_of[label] < rows[label]:
            joiner = "&" if "?" in path else "?"
            same = f"{path}{joiner}limit={max(rows_of[label], 1)}"
            times[f"{label} [{rows_of[label]} rows]"] = _median_ms(partial(get, session, same))
    times["/review/<id> detail"] = _median_ms(partial(get, pages, f"/review/{filled.screening_id}"))
    times["/metrics"] = _median_ms(
        partial(get, requests.Session(), "/metrics", Authorization=f"Bearer {metrics}")
    )
    return times, rows


def _time_overdue(database_url: str) -> dict[str, float]:
    """The webhook worker's overdue scan and the gauge's count, in process."""
    store = Store(make_engine(database_url))
    outbox = Outbox(store)
    now = datetime.now(UTC)
    cutoff = now - timedelta(minutes=60)
    urgent = ("urgent_care",)
    # What the worker's scan reads every few seconds once it has caught up, and when it
    # starts: from the progress its last complete scan recorded (the fill's).
    since = cutoff - OVERDUE_RESCAN - timedelta(seconds=5)

    def first_scan() -> int:
        covered = outbox.overdue_covered(urgent)
        assert covered is not None, "the fill records the scans' progress"
        return outbox.notice_overdue(
            urgent, cutoff, now, lambda s: [], since=covered - OVERDUE_RESCAN
        )

    times = {
        "overdue scan (webhook worker, every 5 s)": _median_ms(
            lambda: outbox.notice_overdue(urgent, cutoff, now, lambda s: [], since=since)
        ),
        "overdue scan (webhook worker, its first after starting)": _median_ms(first_scan),
        "overdue count (metrics gauge)": _median_ms(lambda: outbox.count_overdue(urgent, cutoff)),
    }
    store.engine.dispose()
    return times


def _explain(database_url: str, filled: Filled) -> list[tuple[str, bool, str]]:
    """(read, whether every read of the screenings table goes by an index, the plan)."""
    engine = make_engine(database_url)
    store = Store(engine)
    captured: list[tuple[str, Any]] = []

    def remember(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", remember)
    plans = []
    for label, (_, filters, triage) in _reads(filled).items():
        captured.clear()
        store.screenings.page(filters, 50, None, TRIAGE if triage else None)
        lines = []
        for statement, parameters in captured:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
                    lines += [r[0] for r in rows]
                else:
                    rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
                    lines += [r[-1] for r in rows]
        plan = "\n".join(lines)
        if engine.dialect.name == "postgresql":
            indexed = "Seq Scan on screenings" not in plan
        else:
            indexed = not re.search(r"\bSCAN screenings\b(?! USING)", plan)
        plans.append((label, indexed, plan))
    engine.dispose()
    return plans


def _measure(
    name: str, database_url: str, size: int, workdir: Path, rows_of: dict[str, int] | None
) -> tuple[dict[str, float], dict[str, int]]:
    began = time.perf_counter()
    filled = fill(database_url, size)
    print(f"{name}: {size:,} screenings filled in {time.perf_counter() - began:.0f} s", flush=True)
    token, metrics = new_token(), secrets.token_hex(16)
    env = {
        "SCREENING_DATABASE_URL": database_url,
        "SCREENING_API_KEYS": f"bench:clinician:{token_digest(token)}",
        "SCREENING_SECRET_KEY": secrets.token_hex(32),
        "SCREENING_METRICS_KEY": token_digest(metrics),
        "SCREENING_REVIEW_INSECURE_COOKIES": "1",
    }
    process, base = _serve("screening:create_app()", env, workdir / f"{name}-{size}.log")
    try:
        times, rows = _time_http(base, filled, token, metrics, rows_of)
    finally:
        _stop(process)
    times.update(_time_overdue(database_url))
    if rows_of is not None:
        for label, indexed, plan in _explain(database_url, filled):
            print(f"\n{name} {size:,}: {label}: {'index' if indexed else 'SCANS THE TABLE'}")
            print("    " + plan.replace("\n", "\n    "))
    return times, rows


def _report(
    name: str,
    small: tuple[dict[str, float], dict[str, int]],
    large: tuple[dict[str, float], dict[str, int]],
    sizes: tuple[int, int],
) -> None:
    """The table: each read at both sizes (and rows per page), ratio, targets.

    A page that holds more rows at the large size (a filter with few screenings in the
    small table) is also timed there with the small page's rows, marked [n rows]; its
    ratio is the one that tells how the read scales.
    """
    small_ms, small_rows = small
    large_ms, large_rows = large
    print(f"\n{name}: median of {TIMES} ms, one client")
    print(f"{'read':<78} {sizes[0]:>9,} {sizes[1]:>11,}  ratio  targets")
    for label, ms in large_ms.items():
        base_label = re.sub(r" \[\d+ rows\]$", "", label)
        before = small_ms[base_label]
        ratio = ms / before if before else float("inf")
        met = ms <= TARGET_MS and ratio <= TARGET_RATIO
        rows = ""
        if label in large_rows:
            rows = f" ({small_rows[label]}/{large_rows[label]} rows)"
        print(
            f"{label + rows:<78} {before:9.1f} {ms:11.1f}  {ratio:5.2f}  "
            f"{'met' if met else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenings", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="screening-scale-"))
    sizes = (args.small, args.screenings)
    try:
        if args.only != "postgresql":
            results: list[tuple[dict[str, float], dict[str, int]]] = []
            for size in sizes:
                path = workdir / f"scale-{size}.db"
                rows_of = results[0][1] if results else None
                results.append(_measure("sqlite", f"sqlite:///{path}", size, workdir, rows_of))
                path.unlink()
            _report("SQLite", results[0], results[1], sizes)
        if args.only != "sqlite":
            results = []
            for size in sizes:
                made = _postgres_database()
                if made is None:
                    print("PostgreSQL is not reachable: skipped", file=sys.stderr)
                    return
                url, schema = made
                rows_of = results[0][1] if results else None
                try:
                    results.append(_measure("postgresql", url, size, workdir, rows_of))
                finally:
                    _drop_schema(schema)
            _report("PostgreSQL", results[0], results[1], sizes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
