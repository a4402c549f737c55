"""Replay: ``make bench``. ``rules replay`` over a database filled with N stored screenings.

For SQLite and for PostgreSQL: fill a fresh database with N screenings (default
1,000,000) of questionnaire 1.1.0, each with a real stored result (summary and trace,
as a POST stores it), answers varied so that outcomes and deciding rules vary; then
run the real command, ``flask --app screening rules replay CANDIDATE --format json``,
in a child process, against a candidate that moves the pain threshold from 5 to 6.
Prints screenings per second (wall clock of the child) and the child's peak resident
memory; the same at N/10 shows whether memory stays flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

# Run as a script (python bench/replay.py): its own folder is on sys.path, as for webhooks.py.
from load import _drop_schema
from load import _postgres_database

from screening import PROJECT_ROOT
from screening.rules.engine import evaluate
from screening.rules.rulebook import Package
from screening.rules.rulebook import load_package
from screening.storage.migrate import migrate
from screening.storage.store import make_engine
from screening.storage.store import screenings

DEFAULT = PROJECT_ROOT / "rules" / "lumbar-rfa" / "1.1.0"
BATCH = 10_000


def _answers(base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    answers = dict(base)
    answers["pain_intensity"] = rng.randint(0, 10)
    answers["pain_interference"] = rng.randint(0, 10)
    answers["rf_fever"] = rng.random() < 0.03
    answers["treatment_effect"] = rng.choice(["did_not_help", "helped_a_little", "helped_a_lot"])
    return answers


def _templates(package: Package, count: int = 200) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A pool of (answers, stored result) pairs, evaluated once by the real engine."""
    base = json.loads((Path(__file__).parent / "replay_answers.json").read_text())
    rng = random.Random(10)
    pool = []
    for _ in range(count):
        answers, errors = package.questionnaire.validate(_answers(base, rng))
        assert not errors, errors
        result = evaluate(answers, package.ruleset)
        result.pop("ruleset", None)
        result["shadow"] = []
        pool.append((answers, result))
    return pool


def _fill(url: str, n: int) -> None:
    engine = make_engine(url)
    migrate(engine)
    package = load_package(DEFAULT)
    q, r = package.questionnaire, package.ruleset
    pool = _templates(package)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    insert = screenings.insert()
    done = 0
    while done < n:
        rows = []
        for i in range(done, min(n, done + BATCH)):
            answers, result = pool[i % len(pool)]
            rows.append(
                {
                    "id": secrets.token_hex(16),
                    "created_at": start + timedelta(seconds=i),
                    "created_by": "bench",
                    "patient_ref": None,
                    "language": "en",
                    "questionnaire_id": q.id,
                    "questionnaire_version": q.version,
                    "questionnaire_sha256": q.sha256,
                    "ruleset_id": r.id,
                    "ruleset_version": r.version,
                    "ruleset_sha256": r.sha256,
                    "outcome": result["outcome"],
                    "review_status": "pending",
                    "answers": answers,
                    "result": result,
                    "source": None,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert, rows)
        done += len(rows)
    # The statistics autovacuum keeps on a database that grew to this size (the benchmark
    # server may run without it): without them PostgreSQL guesses one matching row and
    # plans every batch as a scan and sort of the whole table.
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE screenings"))
    engine.dispose()


def _candidate(workdir: Path) -> Path:
    """The rule author's draft: lumbar-rfa 1.2.0, pain threshold 5 -> 6 (as in the README)."""
    folder = workdir / "candidate"
    shutil.copytree(DEFAULT, folder)

    def edit(name: str, *pairs: tuple[str, str]) -> None:
        path = folder / name
        text = path.read_text(encoding="utf-8")
        for old, new in pairs:
            assert old in text, (name, old)
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")

    edit(
        "ruleset.yaml",
        ("version: 1.1.0\ntitle:", "version: 1.2.0\ntitle:"),
        ("{item: pain_intensity, less_than: 5}", "{item: pain_intensity, less_than: 6}"),
    )
    edit(
        "i18n/es.yaml",
        ("ruleset: {id: lumbar-rfa, version: 1.1.0}", "ruleset: {id: lumbar-rfa, version: 1.2.0}"),
    )
    edit("package.yaml", ("status: active", "status: draft"), ("default: true", "default: false"))
    return folder


#: Runs argv[2:] and writes its peak RSS (KiB) to the file argv[1]. A child of this process
#: would count this process's memory, whatever the fill left in it, in its own peak (Linux
#: carries the high-water mark of the memory it forked from across exec); the launcher is
#: small, so its child's peak is the command's own.
LAUNCHER = """import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _replay(url: str, candidate: Path) -> tuple[float, int, dict[str, Any]]:
    """Run the real command; (seconds, peak RSS in KiB, the report without changes)."""
    env = {**os.environ, "SCREENING_DATABASE_URL": url}
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False)
    peak_file = Path(out.name).with_suffix(".peak")
    began = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCHER,
            str(peak_file),
            sys.executable,
            "-m",
            "flask",
            "--app",
            "screening",
            "rules",
            "replay",
            str(candidate),
            "--format",
            "json",
        ],
        stdout=out,
        env=env,
        cwd=PROJECT_ROOT,
    )
    status = child.wait()
    seconds = time.perf_counter() - began
    out.close()
    assert status == 0, f"replay exited with {status}"
    report = json.loads(Path(out.name).read_text())
    os.unlink(out.name)
    peak = int(peak_file.read_text())
    peak_file.unlink()
    report.pop("changes")
    return seconds, peak, report


def _measure(label: str, make_url: Any, n: int, candidate: Path) -> None:
    for size in (n // 10, n):
        url, cleanup = make_url()
        try:
            began = time.perf_counter()
            _fill(url, size)
            filled = time.perf_counter() - began
            seconds, peak, report = _replay(url, candidate)
        finally:
            cleanup()
        assert report["screenings"] == size, report
        print(
            f"{label:<10} {size:>9} screenings  fill {filled:7.1f} s   replay {seconds:7.1f} s  "
            f"{size / seconds:9.0f} screenings/s   peak {peak / 1024:6.1f} MiB   "
            f"{report['changed']} would change",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenings", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        candidate = _candidate(workdir)
        print("rules replay, candidate lumbar-rfa 1.2.0 (pain threshold 5 -> 6), one process")
        if args.only != "postgres":

            def sqlite_url() -> tuple[str, Any]:
                path = workdir / f"replay-{secrets.token_hex(4)}.db"
                return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)

            _measure("sqlite", sqlite_url, args.screenings, candidate)
        if args.only != "sqlite":

            def postgres_url() -> tuple[str, Any]:
                found = _postgres_database()
                if found is None:
                    raise SystemExit(
                        "PostgreSQL is not reachable: set SCREENING_BENCH_POSTGRES_URL"
                    )
                url, schema = found
                return url, lambda: _drop_schema(schema)

            _measure("postgres", postgres_url, args.screenings, candidate)


if __name__ == "__main__":
    main()
