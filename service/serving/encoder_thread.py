"""One thread for every forward pass of a server's encoders.

Items that arrive together are run in one batch: the thread takes the first waiting item, gathers
more for at most ``max_wait`` seconds or until ``max_batch`` (whatever queued while it was busy is
taken at once), runs each kind's items in one call and hands each caller its row. Whole jobs
(``Ingest``'s batches) queue on the same thread, after the gathered items, so no two forward passes
ever compete for the cores and each may use all of them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from mmgraph.core.errors import UnavailableError

log = logging.getLogger(__name__)

R = TypeVar("R")
BatchFunction = Callable[[list[Any]], np.ndarray]

MAX_BATCH = 32
MAX_WAIT_SECONDS = 0.002


class EncoderStoppedError(UnavailableError):
    """The server is stopping: its encoder thread takes no more work."""


@dataclass
class _Item:
    """One caller's input, to be run with others of its ``key`` by ``run``."""

    key: Hashable
    run: BatchFunction
    value: Any
    future: Future = field(default_factory=Future)


@dataclass
class _Job:
    """A whole call to run on the thread as it is."""

    call: Callable[[], Any]
    future: Future = field(default_factory=Future)


_STOP = object()


class EncoderThread:
    """Runs batches of items and whole jobs on one thread, one at a time.

    Args:
        max_batch: the most items run in one call.
        max_wait: how long (seconds) the first item of a batch waits for others.
    """

    def __init__(self, max_batch: int = MAX_BATCH, max_wait: float = MAX_WAIT_SECONDS) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.batches = 0  # calls of a batch function (one forward pass each)
        self.jobs = 0  # whole jobs run
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(self, key: Hashable, run: BatchFunction, value: Any) -> Future:
        """Queue ``value`` to be run by ``run`` together with the other values of ``key``
        gathered with it; the future's result is its row of ``run``'s answer (``run`` returns
        one row per value, in order). Cancelling the future before its batch starts drops it."""
        item = _Item(key, run, value)
        self._put(item)
        return item.future

    def call(self, call: Callable[[], R]) -> R:
        """Run ``call`` on the thread, after what is queued before it, and return its result."""
        job = _Job(call)
        self._put(job)
        return job.future.result()

    def close(self) -> None:
        """Finish the batch in progress, fail what is still queued, and end the thread."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join()
        self._fail_queued()

    def _put(self, work: _Item | _Job) -> None:
        with self._lock:
            if self._stopped:
                raise EncoderStoppedError("the server is stopping; retry on another server")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="mmgraph-encoder", daemon=True
                )
                self._thread.start()
            self._queue.put(work)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items, jobs = self._gather(first)
            groups: dict[Hashable, list[_Item]] = {}
            for item in items:
                if item.future.set_running_or_notify_cancel():
                    groups.setdefault(item.key, []).append(item)
            for group in groups.values():
                self._run_batch(group)
            for job in jobs:
                if job.future.set_running_or_notify_cancel():
                    self.jobs += 1
                    _settle(job.future, job.call)

    def _gather(self, first: _Item | _Job) -> tuple[list[_Item], list[_Job]]:
        """``first`` and what arrives within ``max_wait`` of it (or was already queued), up to
        ``max_batch`` items; jobs met on the way come after the items."""
        if isinstance(first, _Job):
            return [], [first]
        items, jobs = [first], []
        deadline = time.monotonic() + self.max_wait
        while len(items) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                work = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if work is _STOP:
                self._queue.put(_STOP)
                break
            (jobs if isinstance(work, _Job) else items).append(work)
        return items, jobs

    def _run_batch(self, items: list[_Item]) -> None:
        self.batches += 1
        try:
            rows = items[0].run([item.value for item in items])
        except Exception as e:  # every caller of the batch gets the error
            for item in items:
                item.future.set_exception(e)
            return
        for i, item in enumerate(items):
            item.future.set_result(rows[i : i + 1])

    def _fail_queued(self) -> None:
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return
            if work is not _STOP and work.future.set_running_or_notify_cancel():
                work.future.set_exception(EncoderStoppedError("the server stopped"))


def _settle(future: Future, call: Callable[[], Any]) -> None:
    try:
        future.set_result(call())
    except Exception as e:
        future.set_exception(e)
