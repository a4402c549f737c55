"""Replay: ``make bench``. ``rules replay`` over a database filled with N stored screenings.

For SQLite and for PostgreSQL: fill a fresh database with N screenings (default
1,000,000) by ``bench/fill.py`` (the scale benchmark's realistic mix: each with a real
stored result, as a POST stores it; four in five answered on questionnaire 1.2.0); then
run the real command, ``flask --app screening rules replay CANDIDATE --format json``,
in a child process, against a candidate that moves the default package's pain threshold
from 5 to 6. Prints screenings replayed per second (wall clock of the child) and the
child's peak resident memory; the same at N/10 shows whether memory stays flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script (python bench/replay.py): its own folder is on sys.path, as for webhooks.py.
from fill import fill
from load import _drop_schema
from load import _postgres_database

from screening import PROJECT_ROOT

DEFAULT = PROJECT_ROOT / "rules" / "lumbar-rfa" / "1.2.0"


def _candidate(workdir: Path) -> Path:
    """A rule author's draft: lumbar-rfa 1.3.0, pain threshold 5 -> 6."""
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
        ("version: 1.2.0\ntitle:", "version: 1.3.0\ntitle:"),
        ("{item: pain_intensity, less_than: 5}", "{item: pain_intensity, less_than: 6}"),
    )
    edit(
        "i18n/es.yaml",
        ("ruleset: {id: lumbar-rfa, version: 1.2.0}", "ruleset: {id: lumbar-rfa, version: 1.3.0}"),
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
            fill(url, size)
            filled = time.perf_counter() - began
            seconds, peak, report = _replay(url, candidate)
        finally:
            cleanup()
        replayed = report["screenings"]
        assert 0 < replayed <= size, report
        print(
            f"{label:<10} {size:>9} stored, {replayed:>9} replayed  fill {filled:7.1f} s   "
            f"replay {seconds:7.1f} s  {replayed / seconds:9.0f} screenings/s   "
            f"peak {peak / 1024:6.1f} MiB   {report['changed']} would change",
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
        print("rules replay, candidate lumbar-rfa 1.3.0 (pain threshold 5 -> 6), one process")
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
