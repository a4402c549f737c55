"""The security review's reproductions (issue 12), replayed black box against gunicorn.

Each test does what the reviewer did, over HTTP to the real server on SQLite and on
PostgreSQL, and checks the answer is now a refusal or harmless, and that nothing was
stored. The flood test measures what the reviewer measured: the metric series and
the size of the Prometheus multiprocess folder.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa

from screening.fhir.forms import questionnaire_response_from_answers
from screening.rules.rulebook import load_rules
from screening.services.keys import token_digest
from screening.storage.database import make_engine
from screening.storage.migrate import migrate
from tests.support.app import API_KEYS
from tests.support.app import RULES_DIR
from tests.support.app import SECRET_KEY
from tests.support.app import TABLES
from tests.support.app import TOKENS
from tests.support.app import base_answers
from tests.support.app import bearer
from tests.support.server import gunicorn

METRICS_TOKEN = "metrics-token"
METRICS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
TIMEOUT = 15
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
QUESTIONNAIRE = load_rules(RULES_DIR).questionnaire


@dataclass(frozen=True)
class Server:
    """A running gunicorn, its database, its log and its metrics folder."""

    base: str
    database_url: str
    log: Path
    metrics_dir: Path

    def count(self, table: str) -> int:
        """How many rows ``table`` holds now."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
        finally:
            engine.dispose()

    def access_log(self) -> list[dict[str, Any]]:
        """The app's access log lines so far."""
        lines = []
        for line in self.log.read_text(errors="replace").splitlines():
            if '"screening.access"' in line:
                lines.append(json.loads(line))
        return lines


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of each kind for this module's servers."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    url = f"sqlite:///{tmp_path_factory.mktemp('security') / 'screening.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


def _environment(database_url: str, metrics_dir: Path, **settings: str) -> dict[str, str]:
    return {
        "SCREENING_DATABASE_URL": database_url,
        "SCREENING_API_KEYS": API_KEYS,
        "SCREENING_SECRET_KEY": SECRET_KEY,
        # Plain http on the loopback: the cookie must travel without TLS here.
        "SCREENING_REVIEW_INSECURE_COOKIES": "1",
        "SCREENING_METRICS_KEY": token_digest(METRICS_TOKEN),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **settings,
    }


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn (2 workers x 4 threads) as in production, rate limit off."""
    folder = tmp_path_factory.mktemp("server")
    metrics_dir = folder / "prometheus"
    env = _environment(
        database,
        metrics_dir,
        SCREENING_RATE_LIMIT="",
        # Workers restart often, so the flood also shows what restarts leave behind.
        GUNICORN_MAX_REQUESTS="1500",
        GUNICORN_MAX_REQUESTS_JITTER="100",
    )
    with gunicorn(env, folder / "gunicorn.log", workers=2) as base:
        yield Server(base, database, folder / "gunicorn.log", metrics_dir)


@pytest.fixture(scope="module")
def limited(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gunicorn with a 10/minute budget, behind one trusted proxy (one worker: one count)."""
    folder = tmp_path_factory.mktemp("limited")
    env = _environment(
        database,
        folder / "prometheus",
        SCREENING_RATE_LIMIT="10/minute",
        SCREENING_TRUSTED_PROXIES="1",
    )
    with gunicorn(env, folder / "gunicorn.log", workers=1) as base:
        yield Server(base, database, folder / "gunicorn.log", folder / "prometheus")


@pytest.fixture(autouse=True)
def _empty(database: str) -> None:
    """Each test starts on an empty database."""
    engine = sa.create_engine(database)
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


def _csrf(page: requests.Response) -> str:
    match = _CSRF.search(page.text)
    assert match is not None, page.text[:500]
    return match.group(1)


def _sign_in(http: requests.Session, base: str, **kwargs: Any) -> None:
    token = _csrf(http.get(f"{base}/review/login", timeout=TIMEOUT, **kwargs))
    response = http.post(
        f"{base}/review/login",
        data={"token": TOKENS["dr-c"], "csrf_token": token},
        allow_redirects=False,
        timeout=TIMEOUT,
        **kwargs,
    )
    assert response.status_code == 303, response.text[:500]


def _store(base: str, who: str = "portal-a") -> str:
    response = requests.post(
        f"{base}/v1/screenings",
        json={"answers": base_answers()},
        headers=bearer(who),
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# --- 1. signing out ends the session ------------------------------------------------------


def test_a_session_cookie_saved_before_signing_out_is_refused(server: Server) -> None:
    screening_id = _store(server.base)
    with requests.Session() as http:
        _sign_in(http, server.base)
        page = http.get(f"{server.base}/review/{screening_id}", timeout=TIMEOUT)
        assert page.status_code == 200
        saved, csrf = http.cookies["session"], _csrf(page)
        out = http.post(
            f"{server.base}/review/logout",
            data={"csrf_token": csrf},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert out.status_code == 303
    assert server.count("review_sessions") == 0
    audited = server.count("audit_log")
    # curl -b session=<saved> /review/, as the reviewer did, and a review posted with it.
    for method, path, data in [
        ("GET", "/review/", None),
        ("GET", f"/review/{screening_id}", None),
        ("POST", f"/review/{screening_id}/review", {"note": "not me", "csrf_token": csrf}),
    ]:
        response = requests.request(
            method,
            f"{server.base}{path}",
            cookies={"session": saved},
            data=data,
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert response.status_code == 303, (path, response.status_code)
        assert urlsplit(response.headers["Location"]).path == "/review/login"
        assert "screening-title" not in response.text
    assert server.count("reviews") == 0
    assert server.count("audit_log") == audited


# --- 2. metrics stay bounded under a flood --------------------------------------------------


def _series(base: str) -> tuple[set[str], float]:
    """The HTTP series /metrics reports (label sets) and how long the scrape took."""
    started = time.perf_counter()
    response = requests.get(f"{base}/metrics", headers=METRICS, timeout=60)
    took = time.perf_counter() - started
    assert response.status_code == 200
    found = {
        line.rsplit(" ", 1)[0]
        for line in response.text.splitlines()
        if line.startswith("screening_http_")
    }
    return found, took


def _folder(path: Path) -> tuple[int, int]:
    """The multiprocess folder's total file size, and how many workers wrote to it."""
    files = list(path.glob("*.db"))
    return sum(f.stat().st_size for f in files), len({f.stem.rsplit("_", 1)[1] for f in files})


def _odd(base: str, start: int, count: int) -> None:
    """``count`` requests with made-up methods and paths, over one connection."""
    with requests.Session() as http:
        for n in range(start, start + count):
            http.request(f"XAB{n}CD", f"{base}/nope-{n}", timeout=TIMEOUT)
            http.request(f"Q{n}", f"{base}/v1/questionnaire", timeout=TIMEOUT)
            http.get(f"{base}/v1/screenings/{n:032x}", headers=bearer("portal-a"), timeout=TIMEOUT)


def test_a_flood_of_odd_methods_and_paths_adds_no_series(server: Server) -> None:
    _odd(server.base, 0, 20)
    _series(server.base)
    before, scrape_before = _series(server.base)
    size_before, workers_before = _folder(server.metrics_dir)
    # 4 threads x 1,000 x 3: 12,000 requests, each with a method or path never seen before.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda part: _odd(server.base, 1000 + part * 1000, 1000), range(4)))
    after, scrape_after = _series(server.base)
    size_after, workers_after = _folder(server.metrics_dir)
    report = (
        f"series {len(before)} -> {len(after)}; folder {size_before} -> {size_after} bytes"
        f" from {workers_before} -> {workers_after} worker processes; scrape"
        f" {scrape_before * 1000:.1f} -> {scrape_after * 1000:.1f} ms"
    )
    print(report)
    assert after == before, report
    labels = " ".join(after)
    assert "XAB" not in labels and "nope" not in labels
    # Workers restarted during the flood (max_requests): each one's files stay at their
    # first size (64 KiB each for counters and histograms), whatever it was sent.
    assert workers_after > workers_before, report
    assert size_after <= workers_after * 2 * 128 * 1024, report


# --- 3. rate limits: one budget per key, per clinician, per client behind the proxy ----------


def test_one_key_gets_its_budget_once_across_all_routes(limited: Server) -> None:
    who = bearer("portal-b")
    paths = ["/v1/questionnaire", "/v1/ruleset", "/cds-services", "/openapi.yaml", "/nope"]
    answered = 0
    with requests.Session() as http:
        for _ in range(10):
            for path in paths:
                status = http.get(f"{limited.base}{path}", headers=who, timeout=TIMEOUT).status_code
                answered += status != 429
    # Under 10/minute the reviewer got 50 answers from 5 routes; one budget gives 10.
    assert answered == 10


def test_anonymous_page_loads_behind_the_proxy_lock_out_no_clinician(limited: Server) -> None:
    def client(address: str) -> dict[str, Any]:
        return {"headers": {"X-Forwarded-For": address}}

    with requests.Session() as clinician:
        _sign_in(clinician, limited.base, **client("198.51.100.20"))
        # Twelve anonymous GET /review/ from one client, through the same proxy...
        refused = sum(
            requests.get(
                f"{limited.base}/review/",
                allow_redirects=False,
                timeout=TIMEOUT,
                **client("198.51.100.10"),
            ).status_code
            == 429
            for _ in range(12)
        )
        assert refused == 2
        # ... spoofing an address in front of the proxy's own entry does not help...
        spoofed = requests.get(
            f"{limited.base}/review/login",
            timeout=TIMEOUT,
            headers={"X-Forwarded-For": "203.0.113.1, 198.51.100.10"},
        )
        assert spoofed.status_code == 429
        # ... the signed-in clinician (counted by key) and a new one (their own address) work.
        page = clinician.get(f"{limited.base}/review/", timeout=TIMEOUT, **client("198.51.100.20"))
        assert page.status_code == 200
        with requests.Session() as other:
            _sign_in(other, limited.base, **client("198.51.100.30"))


# --- 4. the body limit on every transfer, and a 413 the client can read -----------------------


def _connect(base: str) -> socket.socket:
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one response (read until the body's length is in)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    assert match is not None, head
    while len(body) < int(match.group(1)):
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return status, body


def _headers(base: str, framing: str) -> bytes:
    host = urlsplit(base).netloc
    return (
        f"POST /v1/screenings HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
        f"{TOKENS['portal-a']}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _padded(size: int) -> bytes:
    """A valid submission padded with spaces to ``size`` bytes: valid JSON cut anywhere after."""
    body = json.dumps({"answers": base_answers()}).encode()
    return body + b" " * (size - len(body))


def test_a_chunked_body_past_64_kib_is_413_sent_slowly_and_read_whole(server: Server) -> None:
    body = _padded(80_000)
    with _connect(server.base) as sock:
        sock.sendall(_headers(server.base, "Transfer-Encoding: chunked"))
        # 4 KiB chunks, 10 ms apart: the server has answered long before the last one.
        for start in range(0, len(body), 4096):
            piece = body[start : start + 4096]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.01)
        sock.sendall(b"0\r\n\r\n")
        status, answer = _read_response(sock)
    assert status == 413
    assert json.loads(answer)["detail"] == "The request body is larger than 64 KiB."
    assert server.count("screenings") == 0


def test_a_long_content_length_is_413_and_the_slow_sender_reads_it(server: Server) -> None:
    body = _padded(300_000)
    with _connect(server.base) as sock:
        sock.sendall(_headers(server.base, f"Content-Length: {len(body)}"))
        for start in range(0, len(body), 16384):
            sock.sendall(body[start : start + 16384])
            time.sleep(0.01)
        status, answer = _read_response(sock)
    assert status == 413
    assert json.loads(answer)["status"] == 413
    assert server.count("screenings") == 0


def test_a_client_that_sends_its_whole_body_first_always_reads_the_413(server: Server) -> None:
    """As requests does: send everything, then read. Before, some of these were resets."""
    body = _padded(79_500)
    headers = {**bearer("portal-a"), "Content-Type": "application/json"}
    statuses = []
    for n in range(30):
        # Alternate: with a length, and chunked (requests chunks a generator's body).
        data: Any = body if n % 2 else iter([body[i : i + 8192] for i in range(0, len(body), 8192)])
        statuses.append(
            requests.post(
                f"{server.base}/v1/screenings", data=data, headers=headers, timeout=TIMEOUT
            ).status_code
        )
    assert statuses == [413] * 30
    assert server.count("screenings") == 0


# --- 5. no 500s ------------------------------------------------------------------------------


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "extra", [{"extension_x": 2**65}, {"extension_x": _deep(300)}], ids=["big int", "deep"]
)
def test_fhir_bodies_the_store_cannot_write_are_422_on_evaluate_and_store(
    server: Server, extra: dict[str, Any]
) -> None:
    resource = {**questionnaire_response_from_answers(base_answers(), QUESTIONNAIRE), **extra}
    headers = {**bearer("portal-a"), "Content-Type": "application/fhir+json"}
    for path in ("/v1/evaluate", "/v1/screenings"):
        response = requests.post(
            f"{server.base}{path}", data=json.dumps(resource), headers=headers, timeout=TIMEOUT
        )
        assert response.status_code == 422, (path, response.status_code)
        assert list(response.json()["errors"]) == ["body"]
    assert server.count("screenings") == 0


@pytest.mark.parametrize("entry", [5, True])
def test_a_cds_prefetch_entry_that_is_not_a_list_is_422(server: Server, entry: Any) -> None:
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": "123"},
        "prefetch": {"questionnaireResponse": {"resourceType": "Bundle", "entry": entry}},
    }
    response = requests.post(
        f"{server.base}/cds-services/lumbar-rfa-screening",
        json=body,
        headers=bearer("dr-c"),
        timeout=TIMEOUT,
    )
    assert response.status_code == 422


def test_a_review_form_note_with_nul_is_422_and_stores_nothing(server: Server) -> None:
    screening_id = _store(server.base)
    with requests.Session() as http:
        _sign_in(http, server.base)
        page = http.get(f"{server.base}/review/{screening_id}", timeout=TIMEOUT)
        response = http.post(
            f"{server.base}/review/{screening_id}/review",
            data=f"note=a%00b&csrf_token={_csrf(page)}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=TIMEOUT,
        )
    assert response.status_code == 422
    assert server.count("reviews") == 0


# --- 6 and 7. refused keys are logged by name; odd names are not echoed ------------------------


def test_a_portal_key_probing_clinician_routes_is_logged_by_name(server: Server) -> None:
    request_id = f"probe-{time.monotonic_ns()}"
    for path in ("/v1/screenings", "/cds-services/lumbar-rfa-screening"):
        method = "GET" if path == "/v1/screenings" else "POST"
        response = requests.request(
            method,
            f"{server.base}{path}",
            json={} if method == "POST" else None,
            headers={**bearer("portal-a"), "X-Request-ID": request_id},
            timeout=TIMEOUT,
        )
        assert response.status_code == 403
    # The log line is written after the response: give the worker a moment.
    deadline = time.monotonic() + 5
    while True:
        lines = [e for e in server.access_log() if e.get("request_id") == request_id]
        if len(lines) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(e["status"], e["key"]) for e in lines] == [(403, "portal-a"), (403, "portal-a")]


def test_a_3_kb_field_name_or_link_id_is_never_sent_back(server: Server) -> None:
    name = "Jane Doe " + "x" * 3000
    native = {"answers": base_answers(), name: 1}
    resource: dict[str, Any] = dict(
        questionnaire_response_from_answers(base_answers(), QUESTIONNAIRE)
    )
    resource["item"].append({"linkId": name})
    for content_type, body in (
        ("application/json", native),
        ("application/fhir+json", resource),
    ):
        response = requests.post(
            f"{server.base}/v1/evaluate",
            data=json.dumps(body),
            headers={**bearer("portal-a"), "Content-Type": content_type},
            timeout=TIMEOUT,
        )
        assert response.status_code == 422
        assert len(response.content) < 1000
        assert "Jane" not in response.text
