"""Scale-out: two gunicorn instances sharing one PostgreSQL behave as one service.

Each instance is a separate gunicorn on its own port, as two replicas behind a load balancer
would be. Nothing is shared between them but the database, so idempotency, the clinician
list, reviews and the audit log must all be right across them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from screening.storage.database import make_engine
from screening.storage.store import Store
from tests.support.app import API_KEYS
from tests.support.app import TABLES
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.server import gunicorn
from tests.support.server import race_posts

# Only PostgreSQL: replicas on different hosts can't share an SQLite file.
pytestmark = pytest.mark.postgres

RACERS = 12
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def instances(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The base URLs of two gunicorn instances (2 workers x 4 threads) on one database.

    Started once for the module: they keep no state of their own, so emptying the database
    between tests is enough.
    """
    logs = tmp_path_factory.mktemp("scale-out")
    env = {
        "SCREENING_DATABASE_URL": postgres_url,
        "SCREENING_API_KEYS": API_KEYS,
        "SCREENING_RATE_LIMIT": "",
    }
    with ExitStack() as stack:
        a = stack.enter_context(gunicorn(env, logs / "a.log", workers=2))
        b = stack.enter_context(gunicorn(env, logs / "b.log", workers=2))
        assert a != b
        yield a, b


@pytest.fixture(autouse=True)
def store(postgres_url: str, instances: tuple[str, str]) -> Iterator[Store]:
    """The shared database, emptied for each test, for looking behind both instances."""
    store = Store(make_engine(postgres_url))
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    yield store
    store.engine.dispose()


def request(method: str, url: str, who: str, **kwargs: Any) -> tuple[int, Mapping[str, str], Any]:
    """One request as ``who``: status, headers and decoded JSON body (None if empty)."""
    headers = {**bearer(who), **kwargs.pop("headers", {})}
    with requests.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs) as response:
        body = response.json() if response.content else None
        return response.status_code, response.headers.copy(), body


def create(base: str, patient_ref: str, key: str | None = None, who: str = "portal-a") -> str:
    """Store a screening through ``base``; return its id."""
    headers = {} if key is None else {"Idempotency-Key": key}
    body = {"answers": base_answers(), "patient_ref": patient_ref}
    status, _, created = request("POST", f"{base}/v1/screenings", who, json=body, headers=headers)
    assert status == 201, created
    return str(created["id"])


def count_screenings(store: Store) -> int:
    """Screenings in the shared database."""
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM screenings")).scalar_one())


def test_an_idempotency_key_replays_on_the_other_instance(
    instances: tuple[str, str], store: Store
) -> None:
    a, b = instances
    body = {"answers": base_answers(), "patient_ref": "MRN-scale-1"}
    posted = []
    for base in (a, b, a):
        with requests.post(
            f"{base}/v1/screenings",
            json=body,
            headers={**bearer("portal-a"), "Idempotency-Key": "scale-once"},
            timeout=TIMEOUT,
        ) as response:
            posted.append((response.status_code, response.headers.copy(), response.content))
    (first_status, first_headers, first), *repeats = posted
    assert first_status == 201 and "Idempotent-Replayed" not in first_headers
    first_id = json.loads(first)["id"]
    for status, headers, content in repeats:
        assert status == 201
        assert headers["Idempotent-Replayed"] == "true"
        assert headers["Location"] == first_headers["Location"]
        assert content == first
    assert count_screenings(store) == 1

    # The key is scoped to the key name on both: portal-b's use of it is a new screening.
    assert create(b, "MRN-scale-1", key="scale-once", who="portal-b") != first_id
    assert count_screenings(store) == 2


def test_racing_both_instances_with_one_key_stores_one(
    instances: tuple[str, str], store: Store
) -> None:
    body = {"answers": base_answers(), "patient_ref": "MRN-race"}
    for round_number in range(3):
        key = f"scale-race-{round_number}"
        # Half the racers on each instance, interleaved.
        responses = race_posts(
            [(instances[n % 2], body, key) for n in range(RACERS)], timeout=TIMEOUT
        )
        results = [(r.status_code, r.headers, r.content) for r in responses]
        statuses = [status for status, _, _ in results]
        # 409: the other racers' request was still being processed.
        assert set(statuses) <= {201, 409}, statuses
        fresh = [r for r in results if r[0] == 201 and "Idempotent-Replayed" not in r[1]]
        replays = [r for r in results if r[1].get("Idempotent-Replayed") == "true"]
        assert len(fresh) == 1, statuses
        assert all(content == fresh[0][2] for _, _, content in replays)
        assert count_screenings(store) == round_number + 1

        # Once done, the key replays on either instance.
        for base in instances:
            status, headers, replayed = request(
                "POST",
                f"{base}/v1/screenings",
                "portal-a",
                json=body,
                headers={"Idempotency-Key": key},
            )
            assert status == 201 and headers["Idempotent-Replayed"] == "true"
            assert replayed["id"] == json.loads(fresh[0][2])["id"]
    assert count_screenings(store) == 3


def test_the_list_and_reads_span_both_instances(instances: tuple[str, str]) -> None:
    a, b = instances
    # Alternate the instances, so that neighbours in the list come from different ones.
    created = [create(instances[n % 2], f"MRN-list-{n}") for n in range(7)]

    # Each screening reads back on the instance that did not store it.
    for n, screening_id in enumerate(created):
        status, _, full = request(
            "GET", f"{instances[(n + 1) % 2]}/v1/screenings/{screening_id}", "dr-c"
        )
        assert status == 200 and full["patient_ref"] == f"MRN-list-{n}"
        status, _, own = request(
            "GET", f"{instances[(n + 1) % 2]}/v1/screenings/{screening_id}", "portal-a"
        )
        assert status == 200 and own["id"] == screening_id
        # Another portal key sees none of them, on either instance.
        status, _, _ = request(
            "GET", f"{instances[n % 2]}/v1/screenings/{screening_id}", "portal-b"
        )
        assert status == 404

    for first, second in ((a, b), (b, a)):
        # Page by page, switching instance each page: the cursor of one works on the other.
        listed: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            base = (first, second)[pages % 2]
            params: dict[str, str | int] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            status, _, page = request("GET", f"{base}/v1/screenings", "dr-c", params=params)
            assert status == 200, page
            listed += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert listed == created[::-1]
        assert pages == 3


def test_reviews_and_the_audit_log_span_both_instances(
    instances: tuple[str, str], store: Store
) -> None:
    a, b = instances
    screening_id = create(a, "MRN-review")
    url_a, url_b = f"{a}/v1/screenings/{screening_id}", f"{b}/v1/screenings/{screening_id}"

    status, _, reviewed = request("POST", f"{url_b}/review", "dr-c", json={"note": "via B"})
    assert status == 200 and reviewed["review"]["status"] == "reviewed"
    status, _, seen = request("GET", url_a, "dr-c")
    assert status == 200
    assert seen["review"] == reviewed["review"]
    assert [(h["by"], h["note"]) for h in seen["review"]["history"]] == [("dr-c", "via B")]

    status, _, again = request("POST", f"{url_a}/review", "dr-c", json={"note": "via A"})
    assert status == 200
    status, _, seen = request("GET", url_b, "dr-c")
    assert status == 200 and seen["review"] == again["review"]
    history = seen["review"]["history"]
    assert [(h["by"], h["note"]) for h in history] == [("dr-c", "via B"), ("dr-c", "via A")]
    assert history[0]["at"] <= history[1]["at"]

    # The review status filter agrees on both instances.
    for base in instances:
        status, _, page = request(
            "GET", f"{base}/v1/screenings", "dr-c", params={"review_status": "reviewed"}
        )
        assert status == 200 and [item["id"] for item in page["items"]] == [screening_id]
        status, _, page = request(
            "GET", f"{base}/v1/screenings", "dr-c", params={"review_status": "pending"}
        )
        assert status == 200 and page["items"] == []

    # Every action, whichever instance took it, is in the one audit log, in order.
    assert [(e["actor"], e["action"]) for e in store.audit.entries(screening_id)] == [
        ("key:portal-a", "create"),  # A
        ("key:dr-c", "review"),  # B
        ("key:dr-c", "read"),  # A
        ("key:dr-c", "review"),  # A
        ("key:dr-c", "read"),  # B
        ("key:dr-c", "list"),  # A, reviewed
        ("key:dr-c", "list"),  # B, reviewed
    ]
