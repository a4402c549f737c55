"""Screenings evaluated per second without HTTP, in the engine and through the CLI: ``make bench``.

Engine: what the service does per request before storage (validate the answers
against the questionnaire, apply the rules, build both summaries), and the rules
alone (``engine.evaluate`` on answers already validated), on one core in this
process. The answers are the valid rule cases under rules/ (every outcome, every
note), cycled. Each figure is the median of three runs, in CPU time of this
process (what one core does, whatever else the machine runs) and in wall time.

CLI: ``flask --app screening rules evaluate FILE`` run as a user runs it, on a
file of the same answer sets, its output (one JSON line each, about 8 kB with the
trace) written to a file. The start-up (imports, loading the rules) is timed on
an empty batch and taken off, so the figure is the batch rate; both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from screening import PROJECT_ROOT
from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.rulebook import load_rules

RUNS = 3


def _median_rate(count: int, run: Callable[[], None]) -> tuple[float, float]:
    """Median per-second rates of ``RUNS`` runs: (CPU time, wall time)."""
    cpu, wall = [], []
    for _ in range(RUNS):
        started_cpu, started = time.process_time(), time.perf_counter()
        run()
        cpu.append(count / (time.process_time() - started_cpu))
        wall.append(count / (time.perf_counter() - started))
    return statistics.median(cpu), statistics.median(wall)


def _engine(batch: list[dict[str, Any]]) -> None:
    rulebook = load_rules(PROJECT_ROOT / "rules")
    questionnaire, ruleset = rulebook.questionnaire, rulebook.ruleset
    validated = [questionnaire.validate(answers)[0] for answers in batch]

    def screenings() -> None:
        for answers in batch:
            clean, errors = questionnaire.validate(answers)
            assert not errors
            evaluate(clean, ruleset)

    def rules_only() -> None:
        for clean in validated:
            evaluate(clean, ruleset)

    print(f"engine: {len(batch):,} answer sets per run, median of {RUNS}, one core")
    for label, run in (
        ("validate + rules + summaries", screenings),
        ("rules + summaries (engine.evaluate)", rules_only),
    ):
        cpu, wall = _median_rate(len(batch), run)
        print(f"  {label:<37} {cpu:>9,.0f}/s CPU time {wall:>9,.0f}/s wall")


def _flask_evaluate(source: Path, output: Path) -> float:
    """Seconds the real command takes on ``source``, writing its lines to ``output``."""
    flask = Path(sys.executable).parent / "flask"
    environment = {**os.environ, "SCREENING_DATABASE_URL": f"sqlite:///{output.parent / 'x.db'}"}
    with output.open("wb") as lines:
        started = time.perf_counter()
        subprocess.run(
            [str(flask), "--app", "screening", "rules", "evaluate", str(source)],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=lines,
            check=True,
        )
        return time.perf_counter() - started


def _cli(batch: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        source, empty, output = workdir / "batch.json", workdir / "empty.json", workdir / "out"
        source.write_text(json.dumps(batch), encoding="utf-8")
        empty.write_text("[]", encoding="utf-8")
        startups, totals = [], []
        for _ in range(RUNS):
            startups.append(_flask_evaluate(empty, output))
            totals.append(_flask_evaluate(source, output))
            lines = output.read_bytes().count(b"\n")
            assert lines == len(batch), lines
        startup, total = statistics.median(startups), statistics.median(totals)
        batch_rates = [len(batch) / (t - s) for t, s in zip(totals, startups, strict=True)]
    print(
        f"CLI: flask rules evaluate on {len(batch):,} answer sets,"
        f" output to a file, median of {RUNS}"
    )
    print(f"  start-up (empty batch)                {startup:>9.2f} s")
    print(f"  whole command                         {total:>9.2f} s ({len(batch) / total:,.0f}/s)")
    print(f"  batch, start-up taken off             {statistics.median(batch_rates):>9,.0f}/s")


def main() -> None:
    """Print the engine and CLI figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--screenings", type=int, default=20_000)
    args = parser.parse_args()
    rulebook = load_rules(PROJECT_ROOT / "rules")
    answer_sets = [c.answers for c in load_cases(rulebook) if "errors" not in c.expect]
    batch = [answer_sets[i % len(answer_sets)] for i in range(args.screenings)]
    print(f"answer sets: {len(answer_sets)} valid rule cases, cycled")
    _engine(batch)
    _cli(batch)


if __name__ == "__main__":
    main()
