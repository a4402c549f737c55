"""HTTP throughput of the production configuration: ``make bench``.

For SQLite and for PostgreSQL, start gunicorn with ``gunicorn.conf.py`` (the
documented production configuration; rate limiting off), then drive
``GET /healthz`` and authenticated ``POST /v1/screenings`` with wrk on the
loopback interface, one after the other in the same run, and print requests
per second, p50 and p99 latency and errors for each, and the ratio
screenings / healthz. ``/healthz`` is the framework's ceiling: the ratio shows
what validation, rules, summaries and the insert cost beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
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
from screening.rules.loader import load_rules
from screening.services.keys import new_token
from screening.services.keys import token_digest
from screening.storage.migrate import migrate
from screening.storage.store import make_engine

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


def _lua_script(token: str) -> str:
    """A wrk script posting the valid rule cases in turn, as a portal would."""
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
  return wrk.format("POST", "/v1/screenings", headers, bodies[(counter % #bodies) + 1])
end
"""


def _wrk(url: str, connections: int, seconds: int, script: Path | None) -> Run:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run(command + [url], capture_output=True, text=True, check=True)
    return _parse(done.stdout)


def _serve(database_url: str, api_keys: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "SCREENING_DATABASE_URL": database_url,
        "SCREENING_API_KEYS": api_keys,
        "SCREENING_RATE_LIMIT": "",
    }
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                gunicorn,
                "--config",
                str(PROJECT_ROOT / "gunicorn.conf.py"),
                "screening:create_app()",
            ],
            cwd=PROJECT_ROOT,
            env=env,
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


def bench(name: str, database_url: str, args: argparse.Namespace, workdir: Path) -> None:
    """Serve on ``database_url`` and measure both endpoints."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()
    token = new_token()
    script = workdir / "post.lua"
    script.write_text(_lua_script(token), encoding="utf-8")
    process, base = _serve(
        database_url, f"bench:portal:{token_digest(token)}", workdir / f"{name}.log"
    )
    try:
        # Warm up: every worker loads and touches its code paths once.
        _wrk(f"{base}/healthz", args.connections, 2, None)
        _wrk(base, args.connections, 2, script)
        health = _wrk(f"{base}/healthz", args.connections, args.seconds, None)
        post = _wrk(base, args.connections, args.seconds, script)
    finally:
        _stop(process)
    ratio = post.requests_per_second / health.requests_per_second
    print(f"\n{name}: gunicorn.conf.py, wrk -t2 -c{args.connections} -d{args.seconds}s")
    print(f"  {'endpoint':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, run in (("GET /healthz", health), ("POST /v1/screenings", post)):
        print(
            f"  {label:<22} {run.requests_per_second:>9,.0f} {run.p50_ms:>8.2f} "
            f"{run.p99_ms:>8.2f} {run.errors:>7}"
        )
    print(f"  ratio screenings / healthz: {ratio:.2f}")


def main() -> None:
    """Run the HTTP benchmark on SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--only", choices=("sqlite", "postgresql"), help="Run one database.")
    parser.add_argument("--logs", type=Path, help="Keep the servers' logs in this folder.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            workdir = args.logs
        if args.only != "postgresql":
            bench("SQLite", f"sqlite:///{workdir / 'bench.db'}", args, workdir)
        if args.only == "sqlite":
            return
        postgres = _postgres_database()
        if postgres is None:
            print(f"\nPostgreSQL: skipped ({POSTGRES_URL} does not answer)")
            return
        url, schema = postgres
        try:
            bench("PostgreSQL", url, args, workdir)
        finally:
            _drop_schema(schema)


if __name__ == "__main__":
    main()
