"""Group commit: the writes of concurrent requests share one transaction and one flush.

A durable commit waits for the disk (an fsync on SQLite with ``synchronous=FULL``, the WAL
flush on PostgreSQL). Done once per request, that wait caps a server at a few hundred
writes a second, however many threads it has. Here, the first request to arrive becomes the
*leader*: it takes every write queued meanwhile, runs each in its own savepoint inside one
transaction, commits once, and only then wakes the others. While it commits, new writes
queue up for the next leader, which is the first of them (so no request waits behind more
than the batch ahead of its own).

Each write still succeeds or fails alone: a write that raises is rolled back to its
savepoint and its request gets the exception; the others commit. If the commit itself
fails, every write in the batch gets that error and nothing of the batch is stored. No
request is answered before the commit that holds its write has returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any
from typing import Generic
from typing import TypeVar

from sqlalchemy.engine import Connection

T = TypeVar("T")

#: The most writes one transaction takes: bounds how long a batch holds the write lock.
MAX_BATCH = 64


class _Write(Generic[T]):
    """One request's write, waiting for its batch's commit."""

    __slots__ = ("work", "value", "error", "done", "woken")

    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        self.value: T | None = None
        self.error: BaseException | None = None
        #: Set once the batch holding this write has committed (or failed).
        self.done = False
        self.woken = threading.Event()


class GroupCommit:
    """Runs writes in shared transactions opened by ``transaction``."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._transaction = transaction
        self._lock = threading.Lock()
        self._queue: list[_Write[Any]] = []
        self._leading = False

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in a transaction shared with concurrent writes; return its
        value once that transaction has committed, or raise what it (or the commit) raised."""
        write = _Write(work)
        with self._lock:
            self._queue.append(write)
            lead = not self._leading
            self._leading = True
        if not lead:
            write.woken.wait()
        if not write.done:
            # This thread leads: its own write is first in the queue.
            self._lead()
        if write.error is not None:
            raise write.error
        return write.value  # type: ignore[return-value]

    def _lead(self) -> None:
        """Commit the queued writes as one batch, then hand leadership on."""
        with self._lock:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            self._commit(batch)
        finally:
            with self._lock:
                for write in batch:
                    write.done = True
                if self._queue:
                    # The next batch's first write leads it (woken, but not done).
                    self._queue[0].woken.set()
                else:
                    self._leading = False
            for write in batch:
                write.woken.set()

    def _commit(self, batch: list[_Write[Any]]) -> None:
        try:
            with self._transaction() as conn:
                if len(batch) == 1:
                    # Alone: no savepoint needed; an error rolls the transaction back.
                    batch[0].value = batch[0].work(conn)
                    return
                for write in batch:
                    try:
                        with conn.begin_nested():
                            write.value = write.work(conn)
                    except Exception as error:  # goes to its own request alone
                        write.error = error
        except BaseException as error:
            # The commit (or the lone write) failed: nothing of the batch is stored.
            for write in batch:
                if write.error is None:
                    write.error = error
                    write.value = None
            if not isinstance(error, Exception):
                raise


class EachAlone:
    """Runs each write in a transaction of its own, committed alone: for PostgreSQL, whose
    WAL writer already flushes the commits of concurrent sessions together."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._transaction = transaction

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in its own transaction; return its value once committed."""
        with self._transaction() as conn:
            return work(conn)
