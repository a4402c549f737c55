"""Screenings validated and evaluated per second, no HTTP: ``make bench``.

Each screening is what the service does per request before storage: validate
the answers against the questionnaire, apply the rules, build both summaries.
The answers are the valid rule cases under rules/ (every outcome, every note),
cycled. Prints the median of several timed runs on one core.
"""

from __future__ import annotations

import argparse
import statistics
import time

from screening import PROJECT_ROOT
from screening.rules.cases import load_cases
from screening.rules.engine import evaluate
from screening.rules.rulebook import load_rules


def main() -> None:
    """Time validation + engine + summaries and print screenings per second."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--screenings", type=int, default=50_000)
    args = parser.parse_args()

    rulebook = load_rules(PROJECT_ROOT / "rules")
    questionnaire, ruleset = rulebook.questionnaire, rulebook.ruleset
    answer_sets = [c.answers for c in load_cases(rulebook) if "errors" not in c.expect]
    batch = [answer_sets[i % len(answer_sets)] for i in range(args.screenings)]

    rates = []
    for _ in range(args.runs):
        start = time.perf_counter()
        for answers in batch:
            clean, errors = questionnaire.validate(answers)
            assert not errors
            evaluate(clean, ruleset)
        elapsed = time.perf_counter() - start
        rates.append(args.screenings / elapsed)

    median = statistics.median(rates)
    print(f"answer sets: {len(answer_sets)} valid rule cases, cycled")
    print(f"runs: {args.runs} x {args.screenings} screenings (validate + rules + summaries)")
    print(f"per run: {', '.join(f'{r:,.0f}' for r in rates)} screenings/s")
    print(f"median: {median:,.0f} screenings/s ({1e6 / median:.1f} us each), one core")


if __name__ == "__main__":
    main()
