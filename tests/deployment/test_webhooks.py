"""Webhooks as an integrator meets them: the real service under gunicorn, real
``flask webhooks run`` worker processes and a real HTTP receiver on the loopback interface.

Every stored screening and review arrives as a signed event within seconds; a receiver
that is down gets its events once it is up again; a worker SIGKILLed in the middle of a
delivery loses nothing (another sends the event again once the lease ends); two workers
at once never send one event at the same time; idempotent replays send nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from screening.storage.tables import screenings
from screening.storage.tables import webhook_deliveries
from tests.support.app import API_KEYS
from tests.support.app import BOTH_DATABASES
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.receiver import Receiver
from tests.support.receiver import new_secret
from tests.support.server import free_port
from tests.support.server import gunicorn
from tests.support.server import webhook_worker

pytestmark = BOTH_DATABASES

PUBLIC_URL = "https://screening.example.org"
EVENTS = ["screening.created", "screening.reviewed", "screening.review_overdue"]
#: The lease the workers take here: the shortest allowed, so a killed worker's rows come back soon.
LEASE = 15
#: "Within seconds": how long an event may take to arrive when nothing fails.
PROMPT = 10.0
DELIVERED = 'screening_webhook_deliveries_total{{endpoint="{}",result="delivered"}}'
SCANS = "screening_webhook_overdue_scans_total"
#: One answers change per outcome, so every band and filter is exercised.
OUTCOME_CHANGES: list[dict[str, Any]] = [
    {"rf_fever": True},
    {"rf_cancer_history": True},
    {"pain_intensity": 3},
    {},
]


@dataclass
class Setup:
    """What a test needs to drive the service and its workers."""

    env: dict[str, str]
    secrets: dict[str, str]
    database_url: str
    folder: Path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on the loopback interface (not started: tests decide when it is up)."""
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def setup(database_url: str, receiver: Receiver, tmp_path: Path) -> Setup:
    """The environment of the service and its workers: "inbox" gets every event,
    "pager" only urgent ones."""
    secrets = {"inbox": new_secret(), "pager": new_secret()}
    endpoints = [
        {
            "name": "inbox",
            "url": receiver.url("inbox"),
            "secret": secrets["inbox"],
            "events": EVENTS,
        },
        {
            "name": "pager",
            "url": receiver.url("pager"),
            "secret": secrets["pager"],
            "events": EVENTS,
            "outcomes": ["urgent_care"],
        },
    ]
    env = {
        "SCREENING_DATABASE_URL": database_url,
        "SCREENING_API_KEYS": API_KEYS,
        "SCREENING_WEBHOOKS": json.dumps(endpoints),
        "SCREENING_PUBLIC_URL": PUBLIC_URL,
        "SCREENING_RATE_LIMIT": "",
    }
    return Setup(env, secrets, database_url, tmp_path)


def _post(base: str, changes: dict[str, Any], key: str | None = None) -> requests.Response:
    headers = bearer("portal-a")
    if key is not None:
        headers["Idempotency-Key"] = key
    response = requests.post(
        f"{base}/v1/screenings",
        json={"answers": {**base_answers(), **changes}, "patient_ref": "MRN-5"},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response


def _deliveries(database_url: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = sa.select(webhook_deliveries).order_by(webhook_deliveries.c.id)
            return [dict(r._mapping) for r in conn.execute(query)]
    finally:
        engine.dispose()


def _attempted(database_url: str) -> bool:
    """Whether every delivery has had an attempt."""
    rows = _deliveries(database_url)
    return bool(rows) and all(r["attempts"] >= 1 and r["lease"] is None for r in rows)


def _worker_log(setup: Setup, name: str) -> Path:
    return setup.folder / f"{name}.log"


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _all_delivered(database_url: str, count: int) -> bool:
    """Whether ``count`` deliveries are stored and each is delivered: nothing is left to send."""
    rows = _deliveries(database_url)
    return len(rows) == count and all(r["status"] == "delivered" for r in rows)


def _counter(port: int, sample: str) -> float:
    """The value of ``sample`` (name and labels) on a worker's metrics, 0 if absent or if
    the worker does not serve them yet."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.ConnectionError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def test_every_screening_and_review_reaches_the_receiver_signed_within_seconds(
    setup: Setup, receiver: Receiver
) -> None:
    receiver.start()
    port = free_port()
    with (
        gunicorn(setup.env, setup.folder / "gunicorn.log", workers=2, threads=4) as base,
        webhook_worker(
            setup.env, _worker_log(setup, "worker"), "--metrics-port", str(port)
        ) as worker,
    ):
        created = [
            _post(base, changes, key=f"k-{n}").json() for n, changes in enumerate(OUTCOME_CHANGES)
        ]
        # Retries of the same keys replay the first responses and send nothing new.
        for n, changes in enumerate(OUTCOME_CHANGES):
            replay = _post(base, changes, key=f"k-{n}")
            assert replay.headers["Idempotent-Replayed"] == "true"
        review = requests.post(
            f"{base}/v1/screenings/{created[0]['id']}/review",
            json={"note": "Called the patient."},
            headers=bearer("dr-c"),
            timeout=10,
        )
        assert review.status_code == 200
        inbox = receiver.wait_for(lambda got: len(got) >= 5, PROMPT, path="inbox")
        pager = receiver.wait_for(lambda got: len(got) >= 2, PROMPT, path="pager")
        # Every attempt recorded and counted (after its row): nothing is left to send.
        _until(
            lambda: (
                _counter(port, DELIVERED.format("inbox")) == 5
                and _counter(port, DELIVERED.format("pager")) == 2
            ),
            PROMPT,
            "the attempts were not all recorded",
        )
        assert worker.poll() is None
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    assert len(receiver.received("inbox")) == 5 and len(receiver.received("pager")) == 2
    events = [r.verify(setup.secrets["inbox"]) for r in inbox]
    by_type = Counter(e["type"] for e in events)
    assert by_type == {"screening.created": 4, "screening.reviewed": 1}
    assert {e["data"]["id"] for e in events if e["type"] == "screening.created"} == {
        c["id"] for c in created
    }
    for event in events:
        assert event["data"]["url"] == f"{PUBLIC_URL}/review/{event['data']['id']}"
        assert event["data"]["created_by"] == "portal-a"
        assert event["data"]["patient_ref"] == "MRN-5"
    reviewed = next(e for e in events if e["type"] == "screening.reviewed")
    assert reviewed["data"]["id"] == created[0]["id"]
    assert reviewed["data"]["review"] == {"status": "reviewed"}
    assert "Called the patient." not in json.dumps(events)

    urgent = [c["id"] for c in created if c["outcome"] == "urgent_care"]
    pager_events = [r.verify(setup.secrets["pager"]) for r in pager]
    assert {e["data"]["id"] for e in pager_events} == set(urgent)
    assert {e["data"]["outcome"] for e in pager_events} == {"urgent_care"}
    assert {(r["status"], r["attempts"]) for r in _deliveries(setup.database_url)} == {
        ("delivered", 1)
    }
    assert 'screening_webhook_deliveries_total{endpoint="inbox",result="delivered"} 5.0' in metrics
    assert 'screening_webhook_deliveries_total{endpoint="pager",result="delivered"} 2.0' in metrics


def test_a_receiver_that_is_down_gets_its_events_once_it_is_up(
    setup: Setup, receiver: Receiver
) -> None:
    with (
        gunicorn(setup.env, setup.folder / "gunicorn.log", workers=1, threads=2) as base,
        webhook_worker(setup.env, _worker_log(setup, "worker")),
    ):
        created = _post(base, {"rf_fever": True}).json()
        # The first attempt finds nothing listening and is scheduled again in about 5 s.
        deadline = time.monotonic() + PROMPT
        while not _attempted(setup.database_url):
            assert time.monotonic() < deadline, "no attempt was made"
            time.sleep(0.2)
        failed = _deliveries(setup.database_url)
        assert {(r["status"], r["last_result"]) for r in failed} == {
            ("pending", "connection error")
        }
        receiver.start()
        got = receiver.wait_for(lambda got: len(got) >= 2, 20.0)
    assert {r.path for r in got} == {"inbox", "pager"}
    for request in got:
        assert request.verify(setup.secrets[request.path])["data"]["id"] == created["id"]
    rows = _deliveries(setup.database_url)
    assert {(r["status"], r["attempts"], r["last_result"]) for r in rows} == {
        ("delivered", 2, "HTTP 204")
    }


def test_a_worker_killed_mid_delivery_loses_nothing(setup: Setup, receiver: Receiver) -> None:
    # The receiver holds the first request long enough to kill the worker sending it.
    holding: list[str] = []

    def answer(path: str, headers: dict[str, str]) -> tuple[int, float]:
        if not holding:
            holding.append(headers["webhook-id"])
            return 204, 8.0
        return 204, 0.0

    receiver.answer_with(answer)
    receiver.start()
    env = {
        **setup.env,
        "SCREENING_WEBHOOKS": json.dumps(
            [e for e in json.loads(setup.env["SCREENING_WEBHOOKS"]) if e["name"] == "inbox"]
        ),
    }
    with gunicorn(env, setup.folder / "gunicorn.log", workers=1, threads=2) as base:
        created = _post(base, {}).json()
        with webhook_worker(
            env, _worker_log(setup, "first"), "--lease-seconds", str(LEASE)
        ) as first:
            receiver.wait_for(lambda got: len(got) >= 1, PROMPT)
            killed_at = time.monotonic()
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        (row,) = _deliveries(setup.database_url)
        assert (row["status"], row["attempts"], row["lease"] is not None) == ("pending", 1, True)
        with webhook_worker(env, _worker_log(setup, "second"), "--lease-seconds", str(LEASE)):
            got = receiver.wait_for(lambda got: len(got) >= 2, LEASE + PROMPT)
    first_try, second_try = got
    assert first_try.webhook_id == second_try.webhook_id == holding[0]
    assert second_try.verify(setup.secrets["inbox"])["data"]["id"] == created["id"]
    # Not before the lease the killed worker held had ended.
    assert second_try.at - killed_at >= LEASE - 8.0 - 1.0
    assert receiver.overlaps == []
    (row,) = _deliveries(setup.database_url)
    assert (row["status"], row["attempts"]) == ("delivered", 2)


def test_two_workers_at_once_never_send_one_event_twice(setup: Setup, receiver: Receiver) -> None:
    receiver.delay = 0.1
    receiver.start()
    count = 40
    expected = count + sum(1 for n in range(count) if n % 4 == 0)
    with (
        gunicorn(setup.env, setup.folder / "gunicorn.log", workers=2, threads=4) as base,
        webhook_worker(setup.env, _worker_log(setup, "a"), "--threads", "4"),
        webhook_worker(setup.env, _worker_log(setup, "b"), "--threads", "4"),
    ):
        # Both workers poll before the first event is stored, so both compete for every one.
        deadline = time.monotonic() + 30
        while not all(
            "worker started" in _worker_log(setup, name).read_text() for name in ("a", "b")
        ):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        ids = [_post(base, OUTCOME_CHANGES[n % 4]).json()["id"] for n in range(count)]
        receiver.wait_for(lambda got: len(got) >= expected, 60.0)
        # Every row recorded delivered: nothing is left that either worker could send.
        _until(
            lambda: _all_delivered(setup.database_url, expected),
            PROMPT,
            "the deliveries were not all recorded",
        )
    got = receiver.received()
    assert receiver.overlaps == []
    # Nothing failed, so each event reached each endpoint exactly once.
    sent = Counter((r.path, r.webhook_id) for r in got)
    assert len(got) == expected and set(sent.values()) == {1}
    assert {r.verify(setup.secrets[r.path])["data"]["id"] for r in got} == set(ids)
    assert {r["status"] for r in _deliveries(setup.database_url)} == {"delivered"}
    # Both workers took part.
    logs = [_worker_log(setup, name).read_text() for name in ("a", "b")]
    assert all('"webhook attempt"' in log for log in logs)


def test_an_overdue_urgent_screening_is_announced_once_by_several_workers(
    setup: Setup, receiver: Receiver
) -> None:
    receiver.start()
    env = {**setup.env, "SCREENING_URGENT_REVIEW_MINUTES": "30"}
    with gunicorn(env, setup.folder / "gunicorn.log", workers=1, threads=2) as base:
        urgent = _post(base, {"rf_fever": True}).json()
        engine = sa.create_engine(setup.database_url)
        with engine.begin() as conn:
            conn.execute(
                screenings.update()
                .where(screenings.c.id == urgent["id"])
                .values(created_at=datetime.now(UTC) - timedelta(minutes=31))
            )
        engine.dispose()
        ports = {name: free_port() for name in ("a", "b", "c")}
        with contextlib.ExitStack() as workers:
            for name, port in ports.items():
                workers.enter_context(
                    webhook_worker(
                        env,
                        _worker_log(setup, name),
                        *("--scan-seconds", "0.2", "--metrics-port", str(port)),
                    )
                )
            got = receiver.wait_for(lambda got: len(got) >= 4, 20.0)
            # Three more scans of every worker later, still once.
            scanned = {name: _counter(port, SCANS) for name, port in ports.items()}
            _until(
                lambda: all(_counter(p, SCANS) >= scanned[n] + 3 for n, p in ports.items()),
                PROMPT,
                "the workers did not scan again",
            )
        full = requests.get(
            f"{base}/v1/screenings/{urgent['id']}", headers=bearer("dr-c"), timeout=10
        ).json()
    got = receiver.received()
    overdue = [r for r in got if r.event["type"] == "screening.review_overdue"]
    assert sorted(r.path for r in overdue) == ["inbox", "pager"]
    for request in overdue:
        event = request.verify(setup.secrets[request.path])
        assert event["data"]["id"] == urgent["id"]
        assert event["data"]["review"] == {"status": "pending"}
    assert full["review"]["overdue"] is True
    assert len(got) == 4
