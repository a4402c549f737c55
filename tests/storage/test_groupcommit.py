"""Group commit on a real database: concurrent writes share commits, and each still
succeeds or fails alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from screening.storage.database import make_engine
from screening.storage.groupcommit import GroupCommit

THREADS = 16
ROWS = 200

things = sa.Table(
    "things",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'group.db'}")
    things.create(engine)
    yield engine
    engine.dispose()


def _committer(engine: sa.Engine) -> tuple[GroupCommit, list[int]]:
    """A group committer on ``engine`` and a list counting its commits."""
    commits: list[int] = []
    sa.event.listen(engine, "commit", lambda _conn: commits.append(1))

    def transaction() -> Any:
        return _begin(engine)

    return GroupCommit(transaction), commits


@contextmanager
def _begin(engine: sa.Engine) -> Iterator[Connection]:
    """A write transaction on a fresh connection, as the store opens one: committed on a
    clean exit, rolled back when the work or the commit fails."""
    with engine.connect() as conn, conn.begin():
        yield conn


def _insert(row_id: int) -> Callable[[Connection], int]:
    def work(conn: Connection) -> int:
        conn.execute(things.insert().values(id=row_id))
        return row_id

    return work


def _race(group: GroupCommit, works: list[Callable[[Connection], Any]]) -> list[Any]:
    """Run ``works`` from THREADS threads at once; each result or the exception raised."""
    results: list[Any] = [None] * len(works)
    start = threading.Barrier(THREADS)

    def worker(offset: int) -> None:
        start.wait()
        for index in range(offset, len(works), THREADS):
            try:
                results[index] = group.run(works[index])
            except Exception as error:
                results[index] = error

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _stored(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.select(things.c.id)))


def test_concurrent_writes_share_commits_and_all_land(engine: sa.Engine) -> None:
    group, commits = _committer(engine)
    results = _race(group, [_insert(n) for n in range(ROWS)])
    assert results == list(range(ROWS))
    assert _stored(engine) == set(range(ROWS))
    # Sixteen writers at once: far fewer commits than writes.
    assert len(commits) < ROWS / 2


def test_a_failing_write_fails_alone(engine: sa.Engine) -> None:
    group, _ = _committer(engine)
    # Every tenth write repeats a key another write holds: that one fails, on its own.
    works = [_insert(n if n % 10 else 1) for n in range(ROWS)]
    results = _race(group, works)
    failed = [n for n, result in enumerate(results) if isinstance(result, Exception)]
    assert all(isinstance(results[n], sa.exc.IntegrityError) for n in failed)
    assert failed and all(n % 10 == 0 or n == 1 for n in failed)
    assert len(failed) == ROWS // 10
    assert _stored(engine) == {n for n in range(ROWS) if n % 10}


def test_a_failed_commit_fails_every_write_of_its_batch(engine: sa.Engine) -> None:
    group, _ = _committer(engine)
    broken = threading.Event()

    def refuse(_conn: Any) -> None:
        if broken.is_set():
            raise sa.exc.OperationalError("COMMIT", {}, Exception("disk full"))

    sa.event.listen(engine, "commit", refuse)
    group.run(_insert(-1))
    broken.set()
    results = _race(group, [_insert(n) for n in range(64)])
    assert all(isinstance(result, sa.exc.OperationalError) for result in results)
    assert _stored(engine) == {-1}
    broken.clear()
    # The committer goes on working after a failed batch.
    assert group.run(_insert(1000)) == 1000
    assert _stored(engine) == {-1, 1000}
