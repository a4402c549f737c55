"""Webhooks in process: the setting, the outbox rows written with each change, signing,
the retry schedule, failures, manual retries and the one-time overdue event.

Deliveries go to a real HTTP receiver on the loopback interface; the worker's own
process-level behaviour (several workers, SIGKILL, restarts) is in
``tests/deployment/test_webhooks.py``.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any
from typing import cast

import pytest
import requests
import sqlalchemy as sa
import yaml
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from jsonschema import FormatChecker

from screening import PROJECT_ROOT
from screening import StartupError
from screening import create_app
from screening import extension
from screening.records import NewDelivery
from screening.services import delivery
from screening.services.delivery import BACKOFF_CAP
from screening.services.delivery import GIVE_UP_AFTER
from screening.services.delivery import JITTER
from screening.services.delivery import Deliverer
from screening.services.delivery import retry_delay
from screening.storage.idempotency import ClaimLost
from screening.storage.outbox import Outbox
from screening.storage.store import Store
from screening.storage.tables import screenings
from screening.storage.tables import webhook_deliveries
from tests.support.app import API_KEYS
from tests.support.app import BOTH_DATABASES
from tests.support.app import app_store
from tests.support.app import bearer
from tests.support.app import make_app
from tests.support.receiver import Receiver
from tests.support.receiver import new_secret
from tests.support.server import service_environment
from tests.support.server import webhook_worker

pytestmark = BOTH_DATABASES

PUBLIC_URL = "https://screening.example.org"
ALL_EVENTS = ["screening.created", "screening.reviewed", "screening.review_overdue"]
SPEC = yaml.safe_load((PROJECT_ROOT / "openapi.yaml").read_text(encoding="utf-8"))
EVENT_SCHEMA = Draft202012Validator(
    {**SPEC["components"]["schemas"]["WebhookEvent"], "components": SPEC["components"]},
    format_checker=FormatChecker(),
)
#: Words that must never appear in an event: answers, texts, notes, tokens.
FORBIDDEN = ("answers", "summary", "note", "token", "trace", "matched_rules", "headline")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver listening on the loopback interface."""
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def secrets_by_endpoint() -> dict[str, str]:
    """A fresh secret for each test endpoint."""
    return {"inbox": new_secret(), "pager": new_secret()}


@pytest.fixture
def hooked(
    database_url: str, receiver: Receiver, secrets_by_endpoint: dict[str, str]
) -> Iterator[Flask]:
    """An app with two endpoints: "inbox" (every event) and "pager" (urgent ones only)."""
    endpoints = [
        {
            "name": "inbox",
            "url": receiver.url("inbox"),
            "secret": secrets_by_endpoint["inbox"],
            "events": ALL_EVENTS,
        },
        {
            "name": "pager",
            "url": receiver.url("pager"),
            "secret": secrets_by_endpoint["pager"],
            "events": ALL_EVENTS,
            "outcomes": ["urgent_care"],
        },
    ]
    with make_app(
        database_url,
        WEBHOOKS=json.dumps(endpoints),
        PUBLIC_URL=PUBLIC_URL + "/",
        URGENT_REVIEW_MINUTES=30,
    ) as app:
        yield app


def _post(client: FlaskClient, answers: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post(
        "/v1/screenings",
        json={"answers": answers, "patient_ref": "MRN-77"},
        headers={**bearer("portal-a"), **headers},
    )
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def _rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        query = sa.select(webhook_deliveries).order_by(webhook_deliveries.c.id)
        return [dict(r._mapping) for r in conn.execute(query)]


def _deliverer(app: Flask, seed: int = 1) -> Deliverer:
    with app.app_context():
        service = extension.notifications()
    deliverer = service.deliverer(lease_seconds=30)
    deliverer._rng = random.Random(seed)
    return deliverer


def _deliver_all(deliverer: Deliverer) -> int:
    """Run the worker's claim-and-send step until nothing is due; return how many it took."""
    handled = 0
    with requests.Session() as session:
        while True:
            claimed = deliverer.deliver_due(session)
            if not claimed:
                return handled
            handled += claimed


# --- the setting ---------------------------------------------------------------------


def _endpoint(**changes: Any) -> dict[str, Any]:
    entry = {
        "name": "ehr-inbox",
        "url": "https://ehr.example.org/hooks",
        "secret": new_secret(),
        "events": ["screening.created"],
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "SCREENING_WEBHOOKS: must be a JSON array"),
        ('{"name": "x"}', "SCREENING_WEBHOOKS: must be a JSON array of endpoints"),
        ([_endpoint(url="ftp://ehr.example.org")], "endpoint 'ehr-inbox': url must be"),
        ([_endpoint(url="/relative")], "endpoint 'ehr-inbox': url must be"),
        ([_endpoint(url="https://ehr.example.org:port/in")], "endpoint 'ehr-inbox': url must be"),
        ([_endpoint(url="https://u:p@ehr.example.org/in")], "endpoint 'ehr-inbox': url must be"),
        ([_endpoint(secret="plain-text-secret")], "endpoint 'ehr-inbox': secret must be whsec_"),
        ([_endpoint(secret="whsec_c2hvcnQ=")], "endpoint 'ehr-inbox': secret must be whsec_"),
        ([_endpoint(secret="whsec_not*base64*at*all*" * 2)], "'ehr-inbox': secret must be"),
        ([_endpoint(events=["screening.deleted"])], "endpoint 'ehr-inbox': events must be"),
        ([_endpoint(events=[])], "endpoint 'ehr-inbox': events must be"),
        ([_endpoint(outcomes=["sunshine"])], "endpoint 'ehr-inbox': outcomes must be"),
        ([_endpoint(colour="red")], "endpoint 'ehr-inbox': unknown field(s) colour"),
        ([_endpoint(events=None)], "endpoint 'ehr-inbox': missing events"),
        ([_endpoint(name="has space")], "endpoint 1: name must be"),
        ([_endpoint(), _endpoint()], "endpoint 'ehr-inbox': another endpoint has this name"),
        (["just a string"], "endpoint 1: must be an object"),
    ],
)
def test_a_bad_endpoint_stops_start_up_naming_the_setting_and_the_endpoint(
    database_url: str, value: Any, message: str
) -> None:
    setting = value if isinstance(value, str) else json.dumps(value)
    config = {"DATABASE_URL": database_url, "API_KEYS": API_KEYS, "WEBHOOKS": setting}
    with pytest.raises(StartupError) as failure:
        create_app({**config, "PUBLIC_URL": PUBLIC_URL})
    assert message in str(failure.value)
    assert str(failure.value).startswith("SCREENING_WEBHOOKS: ")
    # Never the secret, whatever was wrong.
    if isinstance(value, list):
        for entry in value:
            if isinstance(entry, dict) and "secret" in entry:
                assert entry["secret"] not in str(failure.value)


def test_endpoints_need_the_public_url_for_the_events_links(database_url: str) -> None:
    config = {
        "DATABASE_URL": database_url,
        "API_KEYS": API_KEYS,
        "WEBHOOKS": json.dumps([_endpoint()]),
    }
    with pytest.raises(StartupError, match="SCREENING_PUBLIC_URL: needed with SCREENING_WEBHOOKS"):
        create_app(config)
    with pytest.raises(StartupError, match="SCREENING_PUBLIC_URL: must be an absolute"):
        create_app({**config, "PUBLIC_URL": "screening.example.org"})


@pytest.mark.parametrize("minutes", [0, -5, "soon", 1.5, 10081])
def test_a_bad_review_time_stops_start_up(database_url: str, minutes: Any) -> None:
    config = {"DATABASE_URL": database_url, "API_KEYS": API_KEYS}
    with pytest.raises(StartupError, match="SCREENING_URGENT_REVIEW_MINUTES: must be a whole"):
        create_app({**config, "URGENT_REVIEW_MINUTES": minutes})


# --- the outbox ----------------------------------------------------------------------


def test_each_stored_screening_writes_one_row_per_endpoint_that_wants_it(
    hooked: Flask, valid_answers: dict[str, Any]
) -> None:
    client = hooked.test_client()
    plain = _post(client, valid_answers)
    urgent = _post(client, {**valid_answers, "rf_fever": True})
    rows = _rows(app_store(hooked))
    assert [(r["endpoint"], r["screening_id"]) for r in rows] == [
        ("inbox", plain["id"]),
        ("inbox", urgent["id"]),
        ("pager", urgent["id"]),
    ]
    assert {r["event_type"] for r in rows} == {"screening.created"}
    assert {r["status"] for r in rows} == {"pending"}
    # One event, one webhook-id, whichever endpoint gets it.
    assert rows[1]["event_id"] == rows[2]["event_id"] != rows[0]["event_id"]
    assert rows[1]["payload"] == rows[2]["payload"]


def test_the_payload_has_exactly_the_contracts_fields(
    hooked: Flask, valid_answers: dict[str, Any]
) -> None:
    client = hooked.test_client()
    created = _post(client, {**valid_answers, "rf_fever": True})
    full = client.get(f"/v1/screenings/{created['id']}", headers=bearer("dr-c")).get_json()
    event = json.loads(_rows(app_store(hooked))[0]["payload"])
    EVENT_SCHEMA.validate(event)
    assert event == {
        "type": "screening.created",
        "timestamp": full["created_at"],
        "data": {
            "id": created["id"],
            "created_at": full["created_at"],
            "outcome": "urgent_care",
            "decided_by": full["decided_by"],
            "patient_ref": "MRN-77",
            "created_by": "portal-a",
            "ruleset": {"id": full["ruleset"]["id"], "version": full["ruleset"]["version"]},
            "review": {"status": "pending"},
            "url": f"{PUBLIC_URL}/review/{created['id']}",
        },
    }
    text = json.dumps(event)
    for word in FORBIDDEN:
        assert word not in text, word


def test_an_idempotent_replay_writes_no_second_event(
    hooked: Flask, valid_answers: dict[str, Any]
) -> None:
    client = hooked.test_client()
    first = _post(client, valid_answers, **{"Idempotency-Key": "order-1"})
    again = client.post(
        "/v1/screenings",
        json={"answers": valid_answers, "patient_ref": "MRN-77"},
        headers={**bearer("portal-a"), "Idempotency-Key": "order-1"},
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first["id"]
    assert [r["screening_id"] for r in _rows(app_store(hooked))] == [first["id"]]


def test_a_screening_rolled_back_leaves_no_event_and_an_event_that_fails_no_screening(
    hooked: Flask, valid_answers: dict[str, Any]
) -> None:
    store = app_store(hooked)
    with hooked.app_context():
        service = extension.screenings()
        key = extension.authenticator().keys[0]
        submission = service.check_submission(
            {"answers": valid_answers, "patient_ref": None, "questionnaire": None},
            service_catalog(hooked),
        )
        record = service.record(submission, key)
        deliveries = service.notifier.deliveries(
            "screening.created", record, "pending", record.created_at
        )
    assert deliveries
    claim = store.idempotency.claim(key.name, "order-2", "fingerprint")
    assert claim.token is not None
    # Another request took the key over: the insert raises inside its transaction.
    with pytest.raises(ClaimLost):
        store.screenings.insert(
            record,
            idempotency=(key.name, "order-2", "not-the-holders-token"),
            response=(201, "{}"),
            deliveries=deliveries,
        )
    assert _rows(store) == []
    assert store.screenings.get(record.id) is None
    # And the other way: an outbox row the database refuses takes the screening with it.
    broken = [cast(NewDelivery, {**deliveries[0], "payload": None})]
    with pytest.raises(sa.exc.IntegrityError):
        store.screenings.insert(record, deliveries=broken)
    assert store.screenings.get(record.id) is None
    assert _rows(store) == []


def service_catalog(app: Flask) -> Any:
    """The English catalog of the app's translations."""
    return extension.catalogs()["en"]


def test_a_review_writes_a_reviewed_event_for_the_endpoints_that_want_it(
    hooked: Flask, valid_answers: dict[str, Any]
) -> None:
    client = hooked.test_client()
    plain = _post(client, valid_answers)
    reviewed = client.post(
        f"/v1/screenings/{plain['id']}/review", json={"note": "Seen."}, headers=bearer("dr-c")
    )
    assert reviewed.status_code == 200
    rows = [r for r in _rows(app_store(hooked)) if r["event_type"] == "screening.reviewed"]
    assert [r["endpoint"] for r in rows] == ["inbox"]
    event = json.loads(rows[0]["payload"])
    EVENT_SCHEMA.validate(event)
    assert event["data"]["review"] == {"status": "reviewed"}
    assert event["timestamp"] == reviewed.get_json()["review"]["history"][0]["at"]
    assert "Seen." not in rows[0]["payload"]
    # An unknown screening writes nothing.
    missing = client.post("/v1/screenings/nope/review", json={}, headers=bearer("dr-c"))
    assert missing.status_code == 404
    assert len(_rows(app_store(hooked))) == 2


def test_without_endpoints_nothing_is_written(app: Flask, valid_answers: dict[str, Any]) -> None:
    _post(app.test_client(), valid_answers)
    assert _rows(app_store(app)) == []


# --- sending ---------------------------------------------------------------------------


def test_deliveries_are_signed_standard_webhooks_and_marked_delivered(
    hooked: Flask,
    receiver: Receiver,
    secrets_by_endpoint: dict[str, str],
    valid_answers: dict[str, Any],
) -> None:
    client = hooked.test_client()
    urgent = _post(client, {**valid_answers, "rf_fever": True})
    assert _deliver_all(_deliverer(hooked)) == 2
    got = receiver.received()
    assert sorted(r.path for r in got) == ["inbox", "pager"]
    for request in got:
        event = request.verify(secrets_by_endpoint[request.path])
        assert event["data"]["id"] == urgent["id"]
        assert request.headers["content-type"] == "application/json"
        assert request.webhook_id.startswith("msg_")
        # The other endpoint's secret does not verify it.
        other = "pager" if request.path == "inbox" else "inbox"
        with pytest.raises(Exception, match="No matching signature"):
            request.verify(secrets_by_endpoint[other])
    rows = _rows(app_store(hooked))
    assert {(r["status"], r["attempts"], r["last_result"]) for r in rows} == {
        ("delivered", 1, "HTTP 204")
    }
    assert all(r["lease"] is None and r["delivered_at"] is not None for r in rows)


def test_a_failed_attempt_is_retried_within_seconds_with_the_same_id(
    hooked: Flask, receiver: Receiver, valid_answers: dict[str, Any]
) -> None:
    _post(hooked.test_client(), valid_answers)
    receiver.status = 503
    deliverer = _deliverer(hooked)
    before = datetime.now(UTC)
    assert _deliver_all(deliverer) == 1
    (row,) = _rows(app_store(hooked))
    assert (row["status"], row["attempts"], row["last_result"]) == ("pending", 1, "HTTP 503")
    wait = row["next_attempt_at"] - before
    assert timedelta(seconds=5 * JITTER[0]) <= wait <= timedelta(seconds=5 * JITTER[1] + 2)
    # Due again: the retry carries the same webhook-id, signed afresh.
    store = app_store(hooked)
    with store.engine.begin() as conn:
        conn.execute(webhook_deliveries.update().values(next_attempt_at=datetime.now(UTC)))
    receiver.status = 200
    assert _deliver_all(deliverer) == 1
    first, second = receiver.received()
    assert first.webhook_id == second.webhook_id
    assert first.body == second.body
    (row,) = _rows(store)
    assert (row["status"], row["attempts"], row["last_result"]) == ("delivered", 2, "HTTP 200")


@pytest.mark.parametrize(("status", "result"), [(302, "HTTP 302"), (410, "HTTP 410")])
def test_anything_but_a_2xx_is_a_failure(
    hooked: Flask, receiver: Receiver, valid_answers: dict[str, Any], status: int, result: str
) -> None:
    _post(hooked.test_client(), valid_answers)
    receiver.status = status
    _deliver_all(_deliverer(hooked))
    (row,) = _rows(app_store(hooked))
    assert (row["status"], row["last_result"]) == ("pending", result)


def test_a_receiver_slower_than_the_timeout_times_out_and_is_retried(
    hooked: Flask,
    receiver: Receiver,
    valid_answers: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # notifications-v1.md: a receiver has 10 s to answer. The wait here is shortened to
    # 1 s (the same code reads it), so the suite does not sit out 10 s per database.
    assert delivery.TIMEOUT_SECONDS == 10.0
    monkeypatch.setattr(delivery, "TIMEOUT_SECONDS", 1.0)
    _post(hooked.test_client(), valid_answers)
    receiver.delay = 2.0
    _deliver_all(_deliverer(hooked))
    (row,) = _rows(app_store(hooked))
    assert (row["status"], row["last_result"]) == ("pending", "timeout")


def test_after_a_day_of_failures_a_delivery_is_marked_failed_and_can_be_retried(
    hooked: Flask, receiver: Receiver, valid_answers: dict[str, Any]
) -> None:
    created = _post(hooked.test_client(), valid_answers)
    store = app_store(hooked)
    receiver.stop()
    # The schedule began a day ago: the next failed attempt is the last.
    with store.engine.begin() as conn:
        conn.execute(
            webhook_deliveries.update().values(
                scheduled_at=datetime.now(UTC) - GIVE_UP_AFTER, attempts=14
            )
        )
    deliverer = _deliverer(hooked)
    _deliver_all(deliverer)
    (row,) = _rows(store)
    assert (row["status"], row["last_result"]) == ("failed", "connection error")
    runner = hooked.test_cli_runner()
    listed = runner.invoke(args=["webhooks", "list", "--failed"])
    assert listed.exit_code == 0, listed.output
    assert f"{row['id']}  failed" in listed.output and created["id"] in listed.output
    assert "MRN-77" not in listed.output
    assert _deliver_all(deliverer) == 0

    refused = runner.invoke(args=["webhooks", "retry", "999"])
    assert refused.exit_code == 1 and "there is no delivery 999" in refused.output
    receiver.start()
    retried = runner.invoke(args=["webhooks", "retry", str(row["id"])])
    assert retried.exit_code == 0, retried.output
    assert _deliver_all(deliverer) == 1
    (row,) = _rows(store)
    assert (row["status"], row["attempts"]) == ("delivered", 1)
    assert len(receiver.received()) == 1
    again = runner.invoke(args=["webhooks", "retry", str(row["id"])])
    assert again.exit_code == 1 and "has not failed" in again.output
    everything = runner.invoke(args=["webhooks", "list"])
    assert f"{row['id']}  delivered" in everything.output
    assert "no failed deliveries" in runner.invoke(args=["webhooks", "list", "--failed"]).output


@pytest.mark.deployment
def test_the_worker_without_endpoints_says_so_and_waits_to_be_stopped(
    database_url: str, tmp_path: Path
) -> None:
    # It neither exits (a supervisor would start it again and again) nor fails.
    log = tmp_path / "worker.log"
    with webhook_worker(service_environment(database_url), log) as worker:
        deadline = time.monotonic() + 20
        while "nothing to deliver" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "SCREENING_WEBHOOKS names no endpoint: nothing to deliver" in log.read_text()
        time.sleep(0.5)
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0


# --- the retry schedule -----------------------------------------------------------------


class _Extreme(random.Random):
    """A random source that always gives the lowest or the highest jitter."""

    def __init__(self, high: bool) -> None:
        super().__init__()
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        """The bound chosen at construction."""
        return b if self.high else a


@pytest.mark.parametrize("high", [False, True])
def test_three_attempts_come_within_two_minutes_then_backoff_caps_at_six_hours(
    backend: str, high: bool
) -> None:
    rng = _Extreme(high)
    starts = [0.0]
    for failed in range(1, 40):
        starts.append(starts[-1] + retry_delay(failed, rng).total_seconds())
    assert starts[2] <= 60
    delays = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert delays == sorted(delays)
    assert max(delays) == BACKOFF_CAP * (JITTER[1] if high else JITTER[0])
    # Attempts keep coming through the first day (the give-up rule is by time, not count).
    assert starts[-1] > GIVE_UP_AFTER.total_seconds()


def test_jitter_spreads_the_retries_of_deliveries_that_failed_together(backend: str) -> None:
    rng = random.Random(7)
    waits = {retry_delay(6, rng).total_seconds() for _ in range(50)}
    assert len(waits) == 50
    assert min(waits) >= 480 * JITTER[0] and max(waits) <= 480 * JITTER[1]


# --- overdue reviews ---------------------------------------------------------------------


def _age(store: Store, screening_id: str, minutes: int) -> None:
    """Move a screening's creation ``minutes`` into the past."""
    with store.engine.begin() as conn:
        conn.execute(
            screenings.update()
            .where(screenings.c.id == screening_id)
            .values(created_at=datetime.now(UTC) - timedelta(minutes=minutes))
        )


def test_an_overdue_urgent_screening_emits_its_event_once_whatever_number_of_workers(
    hooked: Flask, valid_answers: dict[str, Any]
) -> None:
    client = hooked.test_client()
    store = app_store(hooked)
    late = _post(client, {**valid_answers, "rf_fever": True})
    recent = _post(client, {**valid_answers, "rf_fever": True})
    plain = _post(client, valid_answers)
    reviewed = _post(client, {**valid_answers, "rf_fever": True})
    for screening in (late, plain, reviewed):
        _age(store, screening["id"], 31)
    client.post(f"/v1/screenings/{reviewed['id']}/review", json={}, headers=bearer("dr-c"))

    workers = [_deliverer(hooked, seed) for seed in range(4)]
    barrier = threading.Barrier(len(workers))
    counts: list[int] = []

    def scan(deliverer: Deliverer) -> None:
        barrier.wait()
        for _ in range(3):
            counts.append(deliverer.notice_overdue())

    threads = [threading.Thread(target=scan, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 1
    overdue = [r for r in _rows(store) if r["event_type"] == "screening.review_overdue"]
    assert sorted(r["endpoint"] for r in overdue) == ["inbox", "pager"]
    assert {r["screening_id"] for r in overdue} == {late["id"]}
    event = json.loads(overdue[0]["payload"])
    EVENT_SCHEMA.validate(event)
    assert event["type"] == "screening.review_overdue"
    assert event["data"]["review"] == {"status": "pending"}
    assert recent["id"] != late["id"]


def _overdue_scan_statements(store: Store, scan: Any) -> tuple[int, list[str]]:
    """What ``scan()`` returned, and the SELECTs it sent that read ``overdue_reviews``."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "overdue_reviews" in statement and statement.lstrip().startswith("SELECT"):
            statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        return scan(), statements
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)


def _bounded(statements: list[str]) -> bool:
    """Whether the scan asked only for screenings created after a moment (a range of the
    index), not for every overdue one."""
    return bool(statements) and all(s.count("created_at >") == 1 for s in statements)


def test_after_a_full_scan_the_next_reads_only_what_became_due_since(
    hooked: Flask, valid_answers: dict[str, Any]
) -> None:
    """The first scan ever reads every overdue screening; the next ones, of the same worker
    or of one started later, only those that became due after the last complete scan (less
    OVERDUE_RESCAN), so a scan costs the same however many urgent screenings wait
    unreviewed, also just after a restart."""
    client = hooked.test_client()
    store = app_store(hooked)
    deliverer = _deliverer(hooked)
    waiting = _post(client, {**valid_answers, "rf_fever": True})
    _age(store, waiting["id"], 31 + 60 * 24)
    noticed, statements = _overdue_scan_statements(store, deliverer.notice_overdue)
    assert noticed == 1 and not _bounded(statements)
    # Due since: found by the next scan of the same worker, which reads a bounded range.
    fresh = _post(client, {**valid_answers, "rf_fever": True})
    _age(store, fresh["id"], 31)
    noticed, statements = _overdue_scan_statements(store, deliverer.notice_overdue)
    assert noticed == 1 and _bounded(statements)
    # Committed late, just before the last moment covered: still found (OVERDUE_RESCAN),
    # by a worker that has just started, which goes on from the progress recorded.
    late = _post(client, {**valid_answers, "rf_fever": True})
    _age(store, late["id"], 31 + 5)
    restarted = _deliverer(hooked, seed=2)
    noticed, statements = _overdue_scan_statements(store, restarted.notice_overdue)
    assert noticed == 1 and _bounded(statements)
    overdue = {
        r["screening_id"] for r in _rows(store) if r["event_type"] == "screening.review_overdue"
    }
    assert overdue == {waiting["id"], fresh["id"], late["id"]}


def test_the_overdue_progress_keeps_the_furthest_and_is_kept_per_set_of_urgent_outcomes(
    hooked: Flask,
) -> None:
    outbox = Outbox(app_store(hooked))
    urgent = ("urgent_care",)
    assert outbox.overdue_covered(urgent) is None
    now = datetime.now(UTC).replace(microsecond=0)
    outbox.record_overdue_covered(urgent, now)
    # A worker whose scan began earlier records an earlier moment: the furthest is kept.
    outbox.record_overdue_covered(urgent, now - timedelta(minutes=5))
    assert outbox.overdue_covered(urgent) == now
    outbox.record_overdue_covered(urgent, now + timedelta(seconds=5))
    assert outbox.overdue_covered(urgent) == now + timedelta(seconds=5)
    # Rules that make another outcome urgent start over: its screenings were never scanned.
    assert outbox.overdue_covered(("urgent_care", "see_own_doctor_first")) is None


def test_a_claim_sends_only_while_a_whole_attempt_fits_in_its_lease(
    hooked: Flask, receiver: Receiver, valid_answers: dict[str, Any]
) -> None:
    client = hooked.test_client()
    first, second = _post(client, valid_answers), _post(client, valid_answers)
    # The shortest lease leaves 3 s to start attempts: a 4 s answer uses them up.
    receiver.delay = 4.0
    with hooked.app_context():
        deliverer = extension.notifications().deliverer(lease_seconds=15)
    with requests.Session() as session:
        assert deliverer.deliver_due(session) == 2
    assert [r.event["data"]["id"] for r in receiver.received()] == [first["id"]]
    rows = {r["screening_id"]: r for r in _rows(app_store(hooked))}
    assert rows[first["id"]]["status"] == "delivered"
    given_back = rows[second["id"]]
    assert (given_back["status"], given_back["attempts"], given_back["lease"]) == (
        "pending",
        0,
        None,
    )
    assert given_back["next_attempt_at"] <= datetime.now(UTC)


def test_a_sender_that_breaks_stops_the_worker_so_it_is_restarted(
    hooked: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliverer = _deliverer(hooked)
    calls: list[int] = []

    def broken(*_args: Any) -> int:
        # Stands in for a defect: any error that is not the database being away.
        calls.append(1)
        raise RuntimeError("a defect in the sender")

    monkeypatch.setattr(deliverer, "deliver_due", broken)
    stop = threading.Event()
    started = time.monotonic()
    with hooked.app_context():
        clean = deliverer.run(stop, threads=2, poll_seconds=0.05, scan_seconds=0.05)
    assert clean is False
    assert stop.is_set()
    assert time.monotonic() - started < 5
    assert 1 <= len(calls) <= 2


def test_a_worker_told_to_stop_says_it_stopped_cleanly(hooked: Flask) -> None:
    deliverer = _deliverer(hooked)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with hooked.app_context():
        assert deliverer.run(stop, threads=2, poll_seconds=0.05, scan_seconds=0.05) is True


class _BadReceiver:
    """A loopback HTTP server that answers every request with the same raw bytes, then
    holds the connection for ``hold`` seconds (a body that never comes) and closes it."""

    def __init__(self, answer: bytes, hold: float = 0.0) -> None:
        self.answer, self.hold = answer, hold
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.closing = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.answer)
                self.closing.wait(self.hold)

    def close(self) -> None:
        self.closing.set()
        self.server.close()


@pytest.mark.parametrize(
    ("answer", "hold", "result"),
    [
        # A 200 whose chunked body is broken.
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nnot a chunk",
            0.0,
            "request error",
        ),
        # A 200 whose body stops coming after the headers (the read times out).
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf", 3.0, "connection error"),
    ],
    ids=["broken-chunks", "stalled-body"],
)
def test_a_receiver_that_breaks_its_answer_is_a_failed_attempt_not_a_stopped_worker(
    database_url: str,
    valid_answers: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    answer: bytes,
    hold: float,
    result: str,
) -> None:
    monkeypatch.setattr(delivery, "TIMEOUT_SECONDS", 1.0)
    bad = _BadReceiver(answer, hold)
    endpoint = {
        "name": "inbox",
        "url": f"http://127.0.0.1:{bad.port}/hook",
        "secret": new_secret(),
        "events": ALL_EVENTS,
    }
    try:
        with make_app(database_url, WEBHOOKS=json.dumps([endpoint]), PUBLIC_URL=PUBLIC_URL) as app:
            _post(app.test_client(), valid_answers)
            deliverer = _deliverer(app)
            with requests.Session() as session:
                assert deliverer.deliver_due(session) == 1
            [row] = _rows(app_store(app))
    finally:
        bad.close()
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["last_result"] == result
    assert row["lease"] is None
