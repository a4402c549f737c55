"""Webhooks: ``make bench`` (after bench/load.py).

For SQLite and for PostgreSQL, in the same run:

1. **Delivery rate.** Store N screenings with one endpoint configured (their outbox rows
   wait), start one ``flask webhooks run`` worker against a local receiver that answers
   204 at once, and time the deliveries from the first to the last ``delivered_at``:
   events delivered per second, by one worker process with its default 4 threads.
2. **Cost on the request path, in process.** The store's write transaction of a POST,
   with and without its one outbox row, interleaved, median of many; and the whole POST
   through the Flask test client with and without a configured endpoint. The difference is
   the outbox's cost, printed in microseconds and as a share of the POST.
3. **Cost on the request path, under gunicorn.** ``POST /v1/screenings`` with wrk against
   two servers started side by side, one with an endpoint configured and one without,
   alternating A B A B so that the machine's noise hits both: the ratio of their rates.
   ``--control`` serves both without an endpoint, to see how far that ratio moves by noise.

The worker is not running during 2 and 3: the request path only writes the outbox row,
so that row is the whole of what an endpoint adds to a POST.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from load import POSTGRES_URL
from load import _drop_schema
from load import _free_port
from load import _lua_script
from load import _postgres_database
from load import _serve
from load import _stop
from load import _wrk

from screening import PROJECT_ROOT
from screening import create_app
from screening import extension
from screening.rules.cases import load_cases
from screening.rules.rulebook import load_rules
from screening.services.keys import new_token
from screening.services.keys import token_digest
from screening.storage.database import make_engine
from screening.storage.migrate import migrate
from screening.storage.store import Store
from screening.storage.tables import webhook_deliveries

SECRET = "whsec_" + "QmVuY2htYXJrIHNlY3JldCBvZiB0aGlydHktdHdvIGJ5dGVzIQ=="


class _Answer204(BaseHTTPRequestHandler):
    """A receiver that reads the body and answers 204 at once."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """Accept the delivery."""
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def _receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", _free_port()), _Answer204)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _endpoints(url: str) -> str:
    return json.dumps(
        [{"name": "bench", "url": url, "secret": SECRET, "events": ["screening.created"]}]
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Send the in-process apps' access log lines (still written: they are part of a
    POST's cost) to /dev/null instead of the report."""
    saved = sys.stdout
    with open(os.devnull, "w") as sink:
        sys.stdout = sink
        try:
            yield
        finally:
            sys.stdout = saved


def _fresh(database_url: str) -> None:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()


def _bodies() -> list[dict[str, Any]]:
    rulebook = load_rules(PROJECT_ROOT / "rules")
    return [
        {"answers": case.answers, "patient_ref": f"MRN-{n}"}
        for n, case in enumerate(load_cases(rulebook))
        if "errors" not in case.expect
    ]


def _app(database_url: str, token: str, webhooks: str | None) -> Any:
    config: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "API_KEYS": f"bench:portal:{token_digest(token)}",
        "RATE_LIMIT": "",
    }
    if webhooks is not None:
        config.update(WEBHOOKS=webhooks, PUBLIC_URL="https://screening.example.org")
    return create_app(config)


def delivery_rate(database_url: str, count: int, workdir: Path) -> float:
    """Events per second one worker delivers to a receiver that answers at once."""
    _fresh(database_url)
    token = new_token()
    bodies = _bodies()
    with _receiver() as url:
        webhooks = _endpoints(url)
        app = _app(database_url, token, webhooks)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        with _quiet():
            for n in range(count):
                response = client.post(
                    "/v1/screenings", json=bodies[n % len(bodies)], headers=headers
                )
                assert response.status_code == 201, response.get_json()
        engine = sa.create_engine(database_url)
        env = {
            **os.environ,
            "SCREENING_DATABASE_URL": database_url,
            "SCREENING_WEBHOOKS": webhooks,
            "SCREENING_PUBLIC_URL": "https://screening.example.org",
        }
        flask = str(Path(sys.executable).parent / "flask")
        with (workdir / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [flask, "--app", "screening", "webhooks", "run"],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        d = webhook_deliveries.c
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done = conn.execute(
                        sa.select(sa.func.count()).where(d.status == "delivered")
                    ).scalar_one()
                if done == count:
                    break
                time.sleep(0.2)
            with engine.connect() as conn:
                times = [
                    row[0]
                    for row in conn.execute(
                        sa.select(d.delivered_at).where(d.delivered_at.isnot(None))
                    )
                ]
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            engine.dispose()
            extension.of(app).store.engine.dispose()
    stamps = sorted(datetime.fromisoformat(t) if isinstance(t, str) else t for t in times)
    if len(stamps) < count:
        raise SystemExit(f"only {len(stamps)} of {count} delivered; see {workdir / 'worker.log'}")
    return (count - 1) / (stamps[-1] - stamps[0]).total_seconds()


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def in_process_cost(database_url: str, rounds: int) -> tuple[float, float, float, float]:
    """(store write without, with the outbox row; POST without, with an endpoint) in us."""
    _fresh(database_url)
    token = new_token()
    bodies = _bodies()
    plain = _app(database_url, token, None)
    hooked = _app(database_url, token, _endpoints("http://127.0.0.1:9/hook"))
    headers = {"Authorization": f"Bearer {token}"}
    store: Store = extension.of(hooked).store
    with hooked.app_context():
        service = extension.screenings()
        key = extension.authenticator().keys[0]
        catalog = extension.catalogs()["en"]
        submission = service.check_submission(
            {"answers": bodies[0]["answers"], "patient_ref": None, "questionnaire": None},
            catalog,
        )
    writes: dict[bool, list[float]] = {False: [], True: []}
    posts: dict[bool, list[float]] = {False: [], True: []}
    clients = {False: plain.test_client(), True: hooked.test_client()}
    for n in range(rounds):
        for with_row in (n % 2 == 0, n % 2 == 1):
            record = service.record(submission, key)
            rows = (
                service.notifier.deliveries(
                    "screening.created", record, "pending", record.created_at
                )
                if with_row
                else []
            )
            started = time.perf_counter()
            store.screenings.insert(record, deliveries=rows)
            writes[with_row].append(time.perf_counter() - started)
            body = bodies[n % len(bodies)]
            started = time.perf_counter()
            response = clients[with_row].post("/v1/screenings", json=body, headers=headers)
            posts[with_row].append(time.perf_counter() - started)
            assert response.status_code == 201
    for app in (plain, hooked):
        extension.of(app).store.engine.dispose()
    return (
        _median_us(writes[False]),
        _median_us(writes[True]),
        _median_us(posts[False]),
        _median_us(posts[True]),
    )


def gunicorn_ratio(
    urls: tuple[str, str], args: argparse.Namespace, workdir: Path
) -> tuple[list[float], list[float]]:
    """POST rates (req/s) without and with an endpoint, alternating, several rounds."""
    token = new_token()
    script = workdir / "post.lua"
    script.write_text(_lua_script(token, "/v1/screenings"), encoding="utf-8")
    keys = f"bench:portal:{token_digest(token)}"
    servers = []
    try:
        for label, url in zip(("plain", "hooked"), urls, strict=True):
            _fresh(url)
            env = {"SCREENING_DATABASE_URL": url, "SCREENING_API_KEYS": keys}
            if label == "hooked" and not args.control:
                env["SCREENING_WEBHOOKS"] = _endpoints("http://127.0.0.1:9/hook")
                env["SCREENING_PUBLIC_URL"] = "https://screening.example.org"
            servers.append(_serve("screening:create_app()", env, workdir / f"{label}.log"))
        bases = [base for _, base in servers]
        for base in bases:
            _wrk(base, args.connections, 2, script)
        rates: tuple[list[float], list[float]] = ([], [])
        for n in range(args.rounds):
            order = (0, 1) if n % 2 == 0 else (1, 0)
            for which in order:
                run = _wrk(bases[which], args.connections, args.seconds, script)
                if run.errors:
                    raise SystemExit(f"{run.errors} errors; see {workdir}")
                rates[which].append(run.requests_per_second)
        return rates
    finally:
        for process, _ in servers:
            _stop(process)


def report(name: str, urls: tuple[str, str], args: argparse.Namespace, workdir: Path) -> None:
    """All three measurements on one database."""
    rate = delivery_rate(urls[1], args.events, workdir)
    with _quiet():
        costs = in_process_cost(urls[0], args.inserts)
    write_plain, write_hooked, post_plain, post_hooked = costs
    print(f"\n{name}: webhooks")
    print(f"  delivery: {rate:,.0f} events/s (one worker, 4 threads, {args.events} events)")
    added = write_hooked - write_plain
    print(
        f"  in process: store write {write_plain:,.0f} us, with its outbox row "
        f"{write_hooked:,.0f} us (+{added:,.0f} us); whole POST {post_plain:,.0f} us "
        f"without an endpoint, {post_hooked:,.0f} us with one"
    )
    print(
        f"  outbox row / POST: {added / post_plain:.1%} (write difference); "
        f"POST with / without: {post_hooked / post_plain:.3f}"
    )
    if shutil.which("wrk") is None:
        print("  gunicorn: skipped (wrk is not installed)")
        return
    plain, hooked = gunicorn_ratio(urls, args, workdir)
    ratios = [h / p for p, h in zip(plain, hooked, strict=True)]
    control = " (control: neither server has an endpoint)" if args.control else ""
    print(
        f"  gunicorn + wrk -c{args.connections}, {args.rounds} x {args.seconds}s each{control}, "
        f"alternating: without {statistics.median(plain):,.0f} req/s, with "
        f"{statistics.median(hooked):,.0f} req/s; with / without per round "
        f"{', '.join(f'{r:.3f}' for r in ratios)} (median {statistics.median(ratios):.3f})"
    )


def main() -> None:
    """Run the webhook benchmark on SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--inserts", type=int, default=600)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="Run one database.")
    parser.add_argument(
        "--control",
        action="store_true",
        help="Serve both gunicorn servers without an endpoint (an A/A run): the ratio's "
        "spread is then the machine's noise alone.",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if args.only != "postgresql":
            report(
                "SQLite",
                (f"sqlite:///{workdir / 'plain.db'}", f"sqlite:///{workdir / 'hooked.db'}"),
                args,
                workdir,
            )
        if args.only == "sqlite":
            return
        schemas = [_postgres_database(), _postgres_database()]
        if None in schemas:
            print(f"\nPostgreSQL: skipped ({POSTGRES_URL} does not answer)")
            return
        try:
            report(
                "PostgreSQL",
                (schemas[0][0], schemas[1][0]),  # type: ignore[index]
                args,
                workdir,
            )
        finally:
            for created in schemas:
                if created is not None:
                    _drop_schema(created[1])


if __name__ == "__main__":
    main()
