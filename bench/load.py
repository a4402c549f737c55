"""HTTP throughput against the framework's ceiling, in one run: ``make bench``.

Three servers run side by side under gunicorn with ``gunicorn.conf.py`` (the production
configuration, with 2 workers unless WEB_CONCURRENCY says otherwise; rate limiting off): a
bare Flask app answering ``{"status": "ok"}`` (the ceiling, ``bench/bare.py``), the service
on SQLite and the service on PostgreSQL, and on each database the floor of a durable write
(``bench/floor.py``: a bare Flask app storing one screening-sized document per POST, committed
as the service commits). wrk drives each endpoint in turn on the loopback interface, and the
whole round is repeated (three times by default). For each endpoint it prints the median
requests per second, p50 and p99, errors, the ratio to the ceiling measured in the same round
and, for the service's POSTs, the ratio to the floor on the same database in the same round
(medians of the rounds' ratios): the machine is shared and noisy, so only ratios within a
round compare.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from screening import PROJECT_ROOT
from screening.rules.cases import load_cases
from screening.rules.rulebook import load_rules
from screening.services.keys import new_token
from screening.services.keys import token_digest
from screening.storage.database import make_engine
from screening.storage.migrate import migrate

POSTGRES_URL = os.environ.get(
    "SCREENING_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass(frozen=True, slots=True)
class Run:
    """What wrk measured for one endpoint."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _parse(output: str) -> Run:
    """Read wrk's --latency report."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Run(rate, p50, p99, errors)


def _lua_script(token: str, path: str) -> str:
    """A wrk script posting the valid rule cases in turn to ``path`` with ``token``."""
    rulebook = load_rules(PROJECT_ROOT / "rules")
    bodies = [
        json.dumps({"answers": case.answers, "patient_ref": f"MRN-{n}"})
        for n, case in enumerate(load_cases(rulebook))
        if "errors" not in case.expect
    ]
    lua_bodies = ",\n".join(json.dumps(body) for body in bodies)
    return f"""
local bodies = {{
{lua_bodies}
}}
local headers = {{
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer {token}",
}}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "{path}", headers, bodies[(counter % #bodies) + 1])
end
"""


def _wrk(url: str, connections: int, seconds: int, script: Path | None) -> Run:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    return _parse(done.stdout)


def _serve(
    app: str, env: dict[str, str], log: Path, tree: Path = PROJECT_ROOT
) -> tuple[subprocess.Popen[bytes], str]:
    """Start gunicorn with the production configuration on a free port; wait until it answers.

    ``tree``: the checkout whose code and configuration to serve (``bench/ab.py`` serves
    an earlier revision beside this one)."""
    port = _free_port()
    environment = {
        # The setting: 2 gthread workers x 4 threads (gunicorn.conf.py's threads).
        "WEB_CONCURRENCY": "2",
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "SCREENING_RATE_LIMIT": "",
        **env,
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [gunicorn, "--config", str(tree / "gunicorn.conf.py"), app],
            cwd=tree,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"gunicorn did not start; see {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def _postgres_database() -> tuple[str, str] | None:
    """A fresh schema on the benchmark PostgreSQL: (url, schema), or None if unreachable."""
    admin = sa.create_engine(POSTGRES_URL)
    schema = f"screening_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError:
        return None
    finally:
        admin.dispose()
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def _drop_schema(schema: str) -> None:
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One thing wrk drives: a URL, and the wrk script that posts to it (None: GET)."""

    label: str
    url: str
    script: Path | None
    #: The label of the floor this endpoint is compared with too (a stored POST's).
    floor: str | None = None


def _service(
    name: str, database_url: str, keys: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Migrate ``database_url`` and serve the service on it."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()
    env = {"SCREENING_DATABASE_URL": database_url, "SCREENING_API_KEYS": keys}
    return _serve("screening:create_app()", env, workdir / f"{name}.log")


def _floor(name: str, database_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Serve the floor of a durable write (``bench/floor.py``) on a fresh ``database_url``."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    env = {"FLOOR_DATABASE_URL": database_url}
    return _serve("bench.floor:create_app()", env, workdir / f"{name}.log")


def _median_run(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.requests_per_second for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
    )


def measure(args: argparse.Namespace, workdir: Path) -> None:
    """Serve the ceiling and the service, drive every endpoint each round, print the table."""
    portal, clinician = new_token(), new_token()
    keys = ",".join(
        [
            f"bench-portal:portal:{token_digest(portal)}",
            f"bench-clinician:clinician:{token_digest(clinician)}",
        ]
    )
    scripts = {}
    for who, token in (("portal", portal), ("clinician", clinician)):
        for path in ("/v1/screenings", "/v1/evaluate", "/write"):
            script = workdir / f"{who}{path.replace('/', '-')}.lua"
            script.write_text(_lua_script(token, path), encoding="utf-8")
            scripts[who, path] = script
    processes = []
    schemas = []
    try:
        bare, bare_base = _serve("bench.bare:create_app()", {}, workdir / "bare.log")
        processes.append(bare)
        lite, lite_base = _service("sqlite", f"sqlite:///{workdir / 'bench.db'}", keys, workdir)
        processes.append(lite)
        lite_floor, lite_floor_base = _floor(
            "sqlite-floor", f"sqlite:///{workdir / 'floor.db'}", workdir
        )
        processes.append(lite_floor)
        screenings, evaluate = "/v1/screenings", "/v1/evaluate"
        sqlite_floor = "SQLite floor: bare Flask + durable insert"
        endpoints = [
            Endpoint("bare Flask GET /healthz (ceiling)", f"{bare_base}/healthz", None),
            Endpoint("service GET /healthz", f"{lite_base}/healthz", None),
            Endpoint(sqlite_floor, lite_floor_base, scripts["portal", "/write"]),
            Endpoint(
                "SQLite POST /v1/screenings, portal",
                lite_base,
                scripts["portal", screenings],
                sqlite_floor,
            ),
            Endpoint(
                "SQLite POST /v1/screenings, clinician",
                lite_base,
                scripts["clinician", screenings],
                sqlite_floor,
            ),
            Endpoint("POST /v1/evaluate, clinician", lite_base, scripts["clinician", evaluate]),
        ]
        postgres = None if args.only == "sqlite" else _postgres_database()
        if postgres is not None:
            url, schema = postgres
            schemas.append(schema)
            pg, pg_base = _service("postgresql", url, keys, workdir)
            processes.append(pg)
            floor_postgres = _postgres_database()
            if floor_postgres is None:
                raise SystemExit(f"{POSTGRES_URL} stopped answering")
            floor_url, floor_schema = floor_postgres
            schemas.append(floor_schema)
            pg_floor, pg_floor_base = _floor("postgresql-floor", floor_url, workdir)
            processes.append(pg_floor)
            postgres_floor = "PostgreSQL floor: bare Flask + durable insert"
            endpoints += [
                Endpoint(postgres_floor, pg_floor_base, scripts["portal", "/write"]),
                Endpoint(
                    "PostgreSQL POST /v1/screenings, portal",
                    pg_base,
                    scripts["portal", screenings],
                    postgres_floor,
                ),
                Endpoint(
                    "PostgreSQL POST /v1/screenings, clinician",
                    pg_base,
                    scripts["clinician", screenings],
                    postgres_floor,
                ),
            ]
        # Warm up: every worker loads and touches its code paths once.
        for endpoint in endpoints:
            _wrk(endpoint.url, args.connections, 2, endpoint.script)
        runs: dict[str, list[Run]] = {e.label: [] for e in endpoints}
        ratios: dict[str, list[float]] = {e.label: [] for e in endpoints}
        to_floor: dict[str, list[float]] = {e.label: [] for e in endpoints if e.floor}
        for _ in range(args.rounds):
            round_runs = {
                e.label: _wrk(e.url, args.connections, args.seconds, e.script) for e in endpoints
            }
            ceiling = round_runs[endpoints[0].label].requests_per_second
            for endpoint in endpoints:
                run = round_runs[endpoint.label]
                runs[endpoint.label].append(run)
                ratios[endpoint.label].append(run.requests_per_second / ceiling)
                if endpoint.floor:
                    floor = round_runs[endpoint.floor].requests_per_second
                    to_floor[endpoint.label].append(run.requests_per_second / floor)
    finally:
        for process in processes:
            _stop(process)
        for schema in schemas:
            _drop_schema(schema)
    workers = os.environ.get("WEB_CONCURRENCY", "2")
    print(
        f"\nHTTP: gunicorn.conf.py (WEB_CONCURRENCY={workers}), wrk -t2 -c{args.connections} "
        f"-d{args.seconds}s per endpoint, {args.rounds} rounds, medians"
    )
    print(
        f"  {'endpoint':<46} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'ratio':>6} {'to floor':>8}"
    )
    for endpoint in endpoints:
        run = _median_run(runs[endpoint.label])
        ratio = statistics.median(ratios[endpoint.label])
        floor_ratio = (
            f"{statistics.median(to_floor[endpoint.label]):>8.2f}" if endpoint.floor else ""
        )
        print(
            f"  {endpoint.label:<46} {run.requests_per_second:>8,.0f} {run.p50_ms:>7.2f} "
            f"{run.p99_ms:>7.2f} {run.errors:>6} {ratio:>6.2f} {floor_ratio}"
        )
    if postgres is None and args.only != "sqlite":
        print(f"  PostgreSQL: skipped ({POSTGRES_URL} does not answer)")


def main() -> None:
    """Run the HTTP benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=("sqlite",), help="Leave PostgreSQL out.")
    parser.add_argument("--logs", type=Path, help="Keep the servers' logs in this folder.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            workdir = args.logs
        measure(args, workdir)


if __name__ == "__main__":
    main()
