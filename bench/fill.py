"""A database of N stored screenings, mixed as a hospital's would be after a few years.

Each row is a real stored screening: answers drawn by ``tools/realistic.py`` and a result
the real engine gave (summary and trace, as a POST stores it), from a pool of a few hundred
evaluated once. The mix is issue 26's: 1% urgent, 5% see-own-doctor, the rest keep up care or
discuss with a specialist; about 10% pending review (everything from the last 90 days, and
2% of older ones left behind); 250,000 patients; three years of screenings, oldest first;
and each urgent screening pending for more than an hour already marked overdue, as the
webhook worker would have done (with the progress of its scans). Rows go in by batches of
10,000, straight into the tables (as a migration or restore would); PostgreSQL is then
VACUUMed and ANALYZEd, as autovacuum would.

Used by ``bench/scale.py``; run alone it fills one database::

    python bench/fill.py --database-url sqlite:////tmp/scale.db --screenings 1000000
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from screening import PROJECT_ROOT
from screening.rules.engine import evaluate
from screening.rules.rulebook import Package
from screening.rules.rulebook import load_rules
from screening.storage.database import make_engine
from screening.storage.migrate import migrate
from screening.storage.outbox import Outbox
from screening.storage.store import Store
from screening.storage.tables import overdue_reviews
from screening.storage.tables import screenings

# Run as a script (python bench/fill.py) its own folder is on sys.path, not the project's.
sys.path.insert(0, str(PROJECT_ROOT))
from tools.realistic import answers as realistic_answers  # noqa: E402
from tools.realistic import for_questionnaire  # noqa: E402

BATCH = 10_000
PATIENTS = 250_000
SPAN = timedelta(days=3 * 365)
#: Outcome shares of the mix (the rest of the time, what realistic answers give).
SHARES = {
    "urgent_care": 0.01,
    "see_primary_care": 0.05,
    "continue_conservative_care": 0.30,
    "discuss_with_specialist": 0.64,
}
#: Which packages decided: mostly the default, some portals on 1.1.0, some the CMS profile.
PACKAGES = [
    (("lumbar-rfa", "1.2.0"), 0.8),
    (("lumbar-rfa", "1.1.1"), 0.1),
    (("lumbar-rfa-cms", "1.1.0"), 0.1),
]
PENDING_DAYS = 90
STALE_PENDING = 0.02


@dataclass(frozen=True, slots=True)
class Filled:
    """What a benchmark needs to know of the database it got."""

    screenings: int
    now: datetime
    #: A patient with several screenings, a screening id, and the creation time of the
    #: screening halfway through (for a deep page).
    patient_ref: str
    screening_id: str
    middle: datetime


def _pool(package: Package, rng: random.Random, size: int) -> dict[str, list[tuple[Any, ...]]]:
    """Evaluated (answers, result) pairs of ``package``, by outcome."""
    by_outcome: dict[str, list[tuple[Any, ...]]] = {code: [] for code in SHARES}
    tries = 0
    while min(len(v) for v in by_outcome.values()) < size and tries < size * 400:
        tries += 1
        drawn = for_questionnaire(realistic_answers(rng), package.questionnaire)
        answers, errors = package.questionnaire.validate(drawn)
        assert not errors, errors
        result = evaluate(answers, package.ruleset)
        pool = by_outcome[result["outcome"]]
        if len(pool) < size:
            # As the result column keeps it: its ruleset in columns of their own.
            stored = {k: v for k, v in result.items() if k != "ruleset"}
            stored["shadow"] = []
            pool.append((answers, stored, result["ruleset"]))
    return by_outcome


def fill(database_url: str, n: int, seed: int = 26) -> Filled:
    """Migrate ``database_url`` (a fresh database) and store ``n`` screenings in it."""
    rng = random.Random(seed)
    rulebook = load_rules(PROJECT_ROOT / "rules")
    pools = []
    for (ruleset_id, version), weight in PACKAGES:
        package = rulebook.package(ruleset_id, version)
        assert package is not None
        pools.append((package, weight, _pool(package, rng, 60)))
    engine = make_engine(database_url)
    migrate(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - SPAN
    step = SPAN / max(n, 1)
    outcomes, shares = list(SHARES), list(SHARES.values())
    patient_counts: dict[str, int] = {}
    sample_id = ""
    middle = start
    done = 0
    while done < n:
        rows, overdue = [], []
        for i in range(done, min(n, done + BATCH)):
            package, _, pool = rng.choices(pools, [p[1] for p in pools])[0]
            outcome = rng.choices(outcomes, shares)[0]
            answers, result, ruleset = rng.choice(pool[outcome])
            created = start + step * i + timedelta(microseconds=rng.randrange(1000))
            recent = now - created < timedelta(days=PENDING_DAYS)
            pending = recent or rng.random() < STALE_PENDING
            screening_id = secrets.token_hex(16)
            patient = f"P{rng.randrange(PATIENTS):06d}"
            patient_counts[patient] = patient_counts.get(patient, 0) + 1
            rows.append(
                {
                    "id": screening_id,
                    "created_at": created,
                    "created_by": "portal-a",
                    "patient_ref": patient,
                    "language": "en",
                    "questionnaire_id": package.questionnaire.id,
                    "questionnaire_version": package.questionnaire.version,
                    "questionnaire_sha256": package.questionnaire.sha256,
                    "ruleset_id": ruleset["id"],
                    "ruleset_version": ruleset["version"],
                    "ruleset_sha256": ruleset["sha256"],
                    "outcome": outcome,
                    "review_status": "pending" if pending else "reviewed",
                    "answers": answers,
                    "result": result,
                    "source": None,
                    "answers_sha256": None,
                }
            )
            if pending and outcome == "urgent_care" and now - created > timedelta(hours=1):
                overdue.append({"screening_id": screening_id, "noticed_at": created})
            if i == n // 2:
                sample_id, middle = screening_id, created
        with engine.begin() as conn:
            conn.execute(screenings.insert(), rows)
            if overdue:
                conn.execute(overdue_reviews.insert(), overdue)
        done += len(rows)
    # The worker's last complete scan looked at everything due an hour ago.
    Outbox(Store(engine)).record_overdue_covered(("urgent_care",), now - timedelta(hours=1))
    if engine.dialect.name == "postgresql":
        # What autovacuum keeps on a table that grew to this size (the benchmark server may
        # run without it): statistics, and the visibility map that lets a count be read from
        # an index alone. SQLite gets what the service itself gives it.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE screenings"))
            conn.execute(sa.text("VACUUM ANALYZE overdue_reviews"))
    engine.dispose()
    patient = max(patient_counts, key=lambda p: patient_counts[p])
    return Filled(n, now, patient, sample_id or rows[0]["id"], middle)


def main() -> None:
    """Fill one database (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--screenings", type=int, default=1_000_000)
    args = parser.parse_args()
    print(fill(args.database_url, args.screenings))


if __name__ == "__main__":
    main()
