"""Durability: acknowledged screenings survive SIGKILLed workers, a SIGKILLed server and a
restart.

Client threads post screenings, each under its own Idempotency-Key, to a real gunicorn
while the test SIGKILLs workers, and keep posting while the server is stopped and a new one
starts on the same database. A client that loses its connection or gets a 5xx retries with
the same key, as the patient portal would. Afterwards every screening acknowledged with a
201 must read back as acknowledged, a retry of its key must replay it, and the database must
hold exactly one screening per acknowledged key and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from tests.support.app import BOTH_DATABASES
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.server import child_pids
from tests.support.server import gunicorn
from tests.support.server import master_pid
from tests.support.server import running
from tests.support.server import service_environment

pytestmark = BOTH_DATABASES

WORKERS = 3
CLIENTS = 8
#: Hard caps on the load, whatever happens: keys per client, seconds overall.
MAX_KEYS_PER_CLIENT = 150
MAX_LOAD_SECONDS = 40.0
#: A client's pause between keys: enough requests in flight for the kills to interrupt some,
#: few enough screenings that checking every one of them stays quick.
PACE_SECONDS = 0.05
KILLS = 4
KILL_INTERVAL_SECONDS = 1.0
#: How long a kill waits for its victim to be busy before it strikes anyway.
BUSY_WAIT_SECONDS = 0.5
#: Acknowledgements to wait for at each stage, so that every stage runs under load.
ACKS_PER_STAGE = 20
#: How long a client keeps retrying one key through connection errors and 5xx: long enough
#: to span the restart (2 to 6 s on a busy 2-core machine).
RETRY_SECONDS = 20.0
#: How long a client waits out 409 (in flight) on one key. A live request answers within
#: milliseconds, so a longer 409 means that a SIGKILLed worker left the claim behind; only the
#: 30 s stale takeover frees it, too late for this test: the key stays unacknowledged.
IN_FLIGHT_SECONDS = 2.0
REQUEST_TIMEOUT = 10.0


@dataclass
class Sent:
    """One Idempotency-Key a client posted, and what became of it."""

    key: str
    who: str
    body: dict[str, Any]
    #: Every attempt's status code or exception name, in order.
    events: list[str] = field(default_factory=list)
    #: The 201 response that acknowledged the screening, once one came.
    content: bytes | None = None
    location: str | None = None
    replayed: bool = False

    @property
    def screening_id(self) -> str:
        """The acknowledged screening's id."""
        assert self.content is not None, self.key
        return str(json.loads(self.content)["id"])


class Load:
    """Client threads posting screenings to whichever server ``base`` names now."""

    def __init__(self) -> None:
        # Reassigned by the test on restart; reading and assigning a str is atomic.
        self.base = ""
        self.sent: list[Sent] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._deadline = 0.0
        self._threads = [
            threading.Thread(target=self._client, args=(n,), name=f"client-{n}")
            for n in range(CLIENTS)
        ]

    def start(self) -> None:
        """Start every client."""
        self._deadline = time.monotonic() + MAX_LOAD_SECONDS
        for thread in self._threads:
            thread.start()

    def stop(self, *, abort: bool = False) -> None:
        """Stop the clients: after their current key, or at once with ``abort``."""
        self._stop.set()
        if abort:
            self._abort.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(RETRY_SECONDS + REQUEST_TIMEOUT)
        assert not any(t.is_alive() for t in self._threads), "a client did not stop"

    def acknowledged(self) -> int:
        """How many keys got a 201 so far."""
        with self._lock:
            return sum(sent.content is not None for sent in self.sent)

    def _client(self, number: int) -> None:
        # An exception in a thread would only surface as a warning: record it instead.
        try:
            who = ("portal-a", "portal-b")[number % 2]
            with requests.Session() as session:
                for n in range(MAX_KEYS_PER_CLIENT):
                    if self._stop.is_set() or time.monotonic() > self._deadline:
                        return
                    sent = Sent(
                        f"durability-{number}-{n}",
                        who,
                        {"answers": base_answers(), "patient_ref": f"MRN-{number}-{n}"},
                    )
                    with self._lock:
                        self.sent.append(sent)
                    self._post(session, sent)
                    time.sleep(PACE_SECONDS)
        except BaseException as exc:  # noqa: B036 - the test reports it
            self.failures.append(f"client {number}: {exc!r}")

    def _post(self, session: requests.Session, sent: Sent) -> None:
        """Post ``sent`` until a 201, retrying with the same key, within the time limits."""
        headers = {**bearer(sent.who), "Idempotency-Key": sent.key}
        give_up = time.monotonic() + RETRY_SECONDS
        in_flight_since: float | None = None
        while time.monotonic() < give_up and not self._abort.is_set():
            try:
                with session.post(
                    f"{self.base}/v1/screenings",
                    json=sent.body,
                    headers=headers,
                    timeout=REQUEST_TIMEOUT,
                ) as response:
                    status, content = response.status_code, response.content
                    location = response.headers.get("Location")
                    replayed = response.headers.get("Idempotent-Replayed") == "true"
            except requests.RequestException as exc:
                # The worker died or the server is restarting: the screening may or may not
                # be stored. Only a retry with the same key can tell, without a duplicate.
                sent.events.append(type(exc).__name__)
                time.sleep(0.05)
                continue
            sent.events.append(str(status))
            if status == 201:
                with self._lock:
                    sent.content, sent.location, sent.replayed = content, location, replayed
                return
            if status == 409:
                in_flight_since = in_flight_since or time.monotonic()
                if time.monotonic() - in_flight_since > IN_FLIGHT_SECONDS:
                    return
                time.sleep(0.2)
            elif status >= 500:
                # Retried like a lost connection; the test fails on it afterwards, since
                # without a proxy in front nothing but the service answers 5xx.
                time.sleep(0.05)
            else:
                self.failures.append(f"{sent.key}: unexpected {status}: {content[:300]!r}")
                return


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.05)


def kill_workers(master: int, kills: int) -> list[int]:
    """SIGKILL ``kills`` workers of ``master``, one at a time; return their pids.

    Each time the oldest worker goes: it has booted and serves, where a replacement may
    still be loading the app. It goes while it runs, which is most likely while it
    processes a request, so that kills interrupt requests rather than idle workers.
    """
    killed: list[int] = []
    while len(killed) < kills:
        # A killed worker may not have been reaped yet.
        victims = [pid for pid in child_pids(master) if pid not in killed]
        if victims:
            deadline = time.monotonic() + BUSY_WAIT_SECONDS
            while not running(victims[0]) and time.monotonic() < deadline:
                time.sleep(0.001)
            os.kill(victims[0], signal.SIGKILL)
            killed.append(victims[0])
        time.sleep(KILL_INTERVAL_SECONDS)
    return killed


def replaced(master: int, killed: list[int]) -> bool:
    """Whether ``master`` runs its full count of workers again, none of them ``killed``."""
    workers = child_pids(master)
    return len(workers) == WORKERS and not set(killed) & set(workers)


def check_acknowledged(base: str, sent: Sent, answers: dict[str, Any]) -> None:
    """``sent``'s screening reads back as acknowledged, and a retry of its key replays it."""
    assert sent.content is not None
    acknowledged = json.loads(sent.content)
    path = f"/v1/screenings/{acknowledged['id']}"
    assert sent.location == path, sent.key

    with requests.get(f"{base}{path}", headers=bearer("dr-c"), timeout=REQUEST_TIMEOUT) as got:
        assert got.status_code == 200, (sent.key, got.status_code, got.text)
        full = got.json()
    # The 201 went to a portal key, so it holds the patient view: each of its fields must
    # match the clinician's full view, and the full view must hold what was submitted.
    for name, value in acknowledged.items():
        expected = {"patient": full["summary"]["patient"]} if name == "summary" else full[name]
        assert value == expected, (sent.key, name)
    assert full["patient_ref"] == sent.body["patient_ref"], sent.key
    assert full["answers"] == answers, sent.key
    assert (full["review"]["status"], full["review"]["history"]) == ("pending", []), sent.key

    with requests.post(
        f"{base}/v1/screenings",
        json=sent.body,
        headers={**bearer(sent.who), "Idempotency-Key": sent.key},
        timeout=REQUEST_TIMEOUT,
    ) as again:
        assert again.status_code == 201, (sent.key, again.status_code, again.text)
        assert again.headers.get("Idempotent-Replayed") == "true", sent.key
        assert again.headers["Location"] == path, sent.key
        assert again.content == sent.content, sent.key


def resend(base: str, sent: Sent) -> None:
    """Post an unacknowledged key once more: a 201 now acknowledges it, a 409 leaves it so."""
    with requests.post(
        f"{base}/v1/screenings",
        json=sent.body,
        headers={**bearer(sent.who), "Idempotency-Key": sent.key},
        timeout=REQUEST_TIMEOUT,
    ) as response:
        sent.events.append(f"resent:{response.status_code}")
        # 409: a SIGKILLed worker's claim that the stale takeover has not freed yet.
        assert response.status_code in (201, 409), (sent.key, response.status_code, response.text)
        if response.status_code == 201:
            sent.content, sent.location = response.content, response.headers["Location"]
            sent.replayed = response.headers.get("Idempotent-Replayed") == "true"


def stored(database_url: str) -> tuple[set[str], dict[tuple[str, str], tuple[str, str | None]]]:
    """Behind the server's back: the screening ids, and each idempotency record's state
    and screening id by (key name, Idempotency-Key)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            ids = set(conn.execute(sa.text("SELECT id FROM screenings")).scalars())
            records = {
                (row.key_name, row.idempotency_key): (row.state, row.screening_id)
                for row in conn.execute(
                    sa.text(
                        "SELECT key_name, idempotency_key, state, screening_id"
                        " FROM idempotency_records"
                    )
                )
            }
    finally:
        engine.dispose()
    return ids, records


def summary(load: Load, killed: list[int]) -> str:
    """What the load went through, for the test's output."""
    events = Counter(event.split(":")[0] for sent in load.sent for event in sent.events)
    failed_first = [sent for sent in load.sent if sent.events[:1] != ["201"]]
    lost = sum(sent.replayed and sent.events[0] != "201" for sent in load.sent)
    orphaned = sum("409" in sent.events for sent in load.sent)
    return (
        f"{len(load.sent)} keys, {load.acknowledged()} acknowledged; {len(killed)} processes"
        f" killed; {len(failed_first)} keys retried, {lost} of them stored before the response"
        f" was lost, {orphaned} left claimed by a killed worker; attempts: {dict(events)}"
    )


def _serve_under_load(load: Load, base: str) -> int:
    """Point ``load`` at the server ``base``, start it, wait for its first screenings;
    return the server's master pid."""
    load.base = base
    master = master_pid(base)
    load.start()
    wait_for(lambda: load.acknowledged() >= ACKS_PER_STAGE, 15, "the first screenings")
    return master


def _restart_and_check(load: Load, killed: list[int], database_url: str, log: Path) -> None:
    """Start a new server on the same database while the clients go on posting; then check
    that every acknowledged screening reads back, replays, and is stored exactly once."""
    restarted = load.acknowledged()
    with gunicorn(service_environment(database_url), log, workers=WORKERS) as base:
        load.base = base
        wait_for(
            lambda: load.acknowledged() >= restarted + ACKS_PER_STAGE,
            RETRY_SECONDS,
            "the restarted server",
        )
        load.stop()
        print(summary(load, killed))
        assert not load.failures, load.failures
        server_errors = [s.key for s in load.sent if any(e[0] == "5" for e in s.events)]
        assert not server_errors, f"5xx for {server_errors}"

        # A key never acknowledged may still have been stored before its response was
        # lost: one more try tells, so that every stored screening has a 201 to show.
        for sent in load.sent:
            if sent.content is None:
                resend(base, sent)
        acknowledged = [sent for sent in load.sent if sent.content is not None]
        with requests.post(
            f"{base}/v1/evaluate",
            json={"answers": base_answers()},
            headers=bearer("dr-c"),
            timeout=REQUEST_TIMEOUT,
        ) as response:
            answers = response.json()["answers"]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda sent: check_acknowledged(base, sent, answers), acknowledged))

    ids, records = stored(database_url)
    # One screening per acknowledged key: none from a retry, none that nobody was told of.
    assert len({sent.screening_id for sent in acknowledged}) == len(acknowledged)
    assert ids == {sent.screening_id for sent in acknowledged}
    for sent in load.sent:
        record = records.get((sent.who, sent.key))
        if sent.content is not None:
            assert record == ("done", sent.screening_id), (sent.key, record)
        else:
            # Claimed by a request that a SIGKILL stopped before it stored anything.
            assert record == ("in_progress", None), (sent.key, record, sent.events)


def test_acknowledged_screenings_survive_killed_workers_and_a_restart(
    database_url: str, tmp_path: Path
) -> None:
    load = Load()
    try:
        with gunicorn(
            service_environment(database_url), tmp_path / "first.log", workers=WORKERS
        ) as base:
            master = _serve_under_load(load, base)
            killed = kill_workers(master, KILLS)
            # The master replaces each killed worker; the mended server keeps serving.
            wait_for(lambda: replaced(master, killed), 15, "the killed workers' replacements")
            mended = load.acknowledged()
            wait_for(
                lambda: load.acknowledged() >= mended + ACKS_PER_STAGE, 15, "the mended server"
            )
        # The first server is gone (SIGTERM), the clients still post: they retry their keys
        # on the new server, whatever the old one had done with them.
        _restart_and_check(load, killed, database_url, tmp_path / "second.log")
    finally:
        load.stop(abort=True)


def test_acknowledged_screenings_survive_a_killed_server(database_url: str, tmp_path: Path) -> None:
    """The whole server dies at once (SIGKILL of the master and every worker, as in a
    crash) in the middle of the load; a new one starts on the same database."""
    load = Load()
    try:
        with gunicorn(
            service_environment(database_url), tmp_path / "first.log", workers=WORKERS
        ) as base:
            master = _serve_under_load(load, base)
            workers = child_pids(master)
            # Strike while a worker is busy, so that requests die half done.
            deadline = time.monotonic() + BUSY_WAIT_SECONDS
            while not any(running(pid) for pid in workers) and time.monotonic() < deadline:
                time.sleep(0.001)
            killed = [master, *workers]
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        _restart_and_check(load, killed, database_url, tmp_path / "second.log")
    finally:
        load.stop(abort=True)
