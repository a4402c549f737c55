"""Two revisions of the service, measured interleaved: is a change worth keeping?

``python bench/ab.py --old REV [--database sqlite|postgresql]`` checks ``REV`` out beside
this tree (a git worktree) and, round after round, alternating which goes first:

1. **In process**: a fresh database, then ``--posts`` stored POSTs through the Flask test
   client, one at a time; the median microseconds of a POST.
2. **Under gunicorn**: each tree served with its own ``gunicorn.conf.py`` on a fresh
   database, ``POST /v1/screenings`` driven by wrk (``--connections``, ``--seconds``).

It prints each round and the median ratio new/old of each measure. The machine is shared:
only the ratio of runs made in turn means anything. Not part of ``make bench``: it answers
one question about one change (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Run as a script: its own folder is on sys.path, as for load.py.
from load import _drop_schema
from load import _lua_script
from load import _postgres_database
from load import _serve
from load import _stop
from load import _wrk

from screening import PROJECT_ROOT
from screening.services.keys import new_token
from screening.services.keys import token_digest

#: Run in a child with one tree on its path: POSTs through the test client, timed.
IN_PROCESS = """
import json, statistics, sys, time
import screening
from screening import create_app
from screening.rules.cases import load_cases
from screening.rules.rulebook import load_rules
from screening.storage.database import make_engine
from screening.storage.migrate import migrate
tree, url, keys, token, posts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
assert screening.__file__.startswith(tree), screening.__file__
engine = make_engine(url)
migrate(engine)
engine.dispose()
app = create_app({"DATABASE_URL": url, "API_KEYS": keys, "RATE_LIMIT": ""})
client = app.test_client()
bodies = [
    {"answers": case.answers, "patient_ref": f"MRN-{n}"}
    for n, case in enumerate(load_cases(load_rules(tree + "/rules")))
    if "errors" not in case.expect
]
headers = {"Authorization": f"Bearer {token}"}
times = []
for n in range(posts + 50):
    started = time.perf_counter()
    response = client.post("/v1/screenings", json=bodies[n % len(bodies)], headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.data
    if n >= 50:
        times.append(elapsed)
print(json.dumps(statistics.median(times) * 1e6))
"""


def _database(kind: str, folder: Path, name: str) -> tuple[str, str | None]:
    """A fresh, empty database: (url, PostgreSQL schema to drop afterwards)."""
    if kind == "sqlite":
        path = folder / f"{name}.db"
        for leftover in folder.glob(f"{name}.db*"):
            leftover.unlink()
        return f"sqlite:///{path}", None
    made = _postgres_database()
    if made is None:
        raise SystemExit("PostgreSQL does not answer")
    return made


def _environment(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def _in_process(tree: Path, url: str, keys: str, token: str, posts: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(tree), url, keys, token, str(posts)],
        cwd=tree,
        env=_environment(tree),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return float(done.stdout.strip().splitlines()[-1])


def _under_gunicorn(
    tree: Path, url: str, keys: str, script: Path, args: argparse.Namespace, log: Path
) -> float:
    # Migrated by the tree itself, as its image's entrypoint would.
    migrate = "from screening.storage.database import make_engine; "
    migrate += "from screening.storage.migrate import migrate; import sys; "
    migrate += "e = make_engine(sys.argv[1]); migrate(e); e.dispose()"
    subprocess.run(
        [sys.executable, "-c", migrate, url], cwd=tree, env=_environment(tree), check=True
    )
    env = {"PYTHONPATH": str(tree), "SCREENING_DATABASE_URL": url, "SCREENING_API_KEYS": keys}
    process, base = _serve("screening:create_app()", env, log, tree)
    try:
        run = _wrk(f"{base}/v1/screenings", args.connections, args.seconds, script)
    finally:
        _stop(process)
    if run.errors:
        raise SystemExit(f"{run.errors} errors from {tree}; see {log}")
    return run.requests_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="The revision to compare with.")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-gunicorn", action="store_true", help="In process only.")
    args = parser.parse_args()
    token = new_token()
    keys = f"bench:portal:{token_digest(token)}"
    with tempfile.TemporaryDirectory(prefix="screening-ab-") as temp:
        folder = Path(temp)
        old = folder / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(old), args.old],
            cwd=PROJECT_ROOT,
            check=True,
        )
        try:
            script = folder / "post.lua"
            script.write_text(_lua_script(token, "/v1/screenings"), encoding="utf-8")
            trees = {"old": old, "new": PROJECT_ROOT}
            results: dict[str, dict[str, list[float]]] = {
                name: {"in process us": [], "gunicorn req/s": []} for name in trees
            }
            for round_ in range(args.rounds):
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for name in order:
                    url, schema = _database(args.database, folder, name)
                    try:
                        results[name]["in process us"].append(
                            _in_process(trees[name], url, keys, token, args.posts)
                        )
                    finally:
                        if schema:
                            _drop_schema(schema)
                    if args.no_gunicorn:
                        continue
                    url, schema = _database(args.database, folder, name)
                    try:
                        results[name]["gunicorn req/s"].append(
                            _under_gunicorn(
                                trees[name], url, keys, script, args, folder / f"{name}.log"
                            )
                        )
                    finally:
                        if schema:
                            _drop_schema(schema)
                print(
                    f"round {round_ + 1}: "
                    + "  ".join(
                        f"{name} {measure} {values[-1]:,.0f}"
                        for name in trees
                        for measure, values in results[name].items()
                        if values
                    ),
                    flush=True,
                )
            print(f"\n{args.database}: old {args.old}, new the working tree; medians")
            for measure in ("in process us", "gunicorn req/s"):
                old_values, new_values = results["old"][measure], results["new"][measure]
                if not old_values:
                    continue
                ratios = [n / o for n, o in zip(new_values, old_values, strict=True)]
                print(
                    f"{measure:16} old {statistics.median(old_values):10,.1f}  "
                    f"new {statistics.median(new_values):10,.1f}  "
                    f"new/old {statistics.median(ratios):.3f} "
                    f"(rounds {min(ratios):.3f}-{max(ratios):.3f})"
                )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=PROJECT_ROOT, check=False
            )


if __name__ == "__main__":
    main()
