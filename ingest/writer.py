"""One write at a time on a thread of its own: while Neo4j commits a batch, the run reads,
validates and encodes the next one (on two cores, Python's work and the server's overlap instead
of taking turns). At most one write runs or waits, so memory stays bounded by two batches, and
writes land in the order they were handed over."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundWriter:
    """Runs ``write`` calls one after another on one thread; each ``done`` callback runs on the
    caller's thread, in order, when the caller next waits (:meth:`submit` waits for the write
    before it, :meth:`wait` for the last). A write that raised raises there. ``waited``: the
    seconds callers spent waiting, the writes' share not hidden behind the callers' own work."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmgraph-ingest-write")
        self._pending: tuple[Future[Any], Callable[[Any], None], frozenset[str]] | None = None
        self.waited = 0.0

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        # On an error the write in flight is waited for (its transaction ends either way), not
        # reported: the error already leaving is the run's.
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[0].exception()
        self._pool.shutdown(wait=True)

    def submit(
        self,
        write: Callable[[], T],
        done: Callable[[T], None],
        keys: Collection[str] = (),
    ) -> None:
        """Wait for the write before, then start ``write``; ``keys`` (the uids it writes) let
        :meth:`writing` tell whether a read would race it."""
        self.wait()
        self._pending = (self._pool.submit(write), done, frozenset(keys))

    def wait(self) -> None:
        """Wait for the write in flight, if any, and run its ``done`` with its result."""
        pending, self._pending = self._pending, None
        if pending is not None:
            future, done, _ = pending
            t0 = time.perf_counter()
            outcome = future.result()
            self.waited += time.perf_counter() - t0
            done(outcome)

    def writing(self, keys: Collection[str]) -> bool:
        """Whether the write in flight writes any of ``keys``."""
        return self._pending is not None and not self._pending[2].isdisjoint(keys)
