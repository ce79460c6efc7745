"""One thread for every forward pass of a server's encoders.

Items of one kind that arrive together run in one batch: the oldest waiting item waits at most
``max_wait`` seconds from its arrival for others of its kind (what queued while the thread was
busy has waited already, and goes at once), up to its kind's batch size; the batch runs in one
call and each caller gets its row. Whole jobs (``Ingest``'s batches) queue on the same thread in
arrival order, so no two forward passes ever compete for the cores.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from mmgraph.core.errors import UnavailableError

R = TypeVar("R")
BatchFunction = Callable[[list[Any]], np.ndarray]

MAX_BATCH = 32
MAX_WAIT_SECONDS = 0.002


def set_forward_threads(processes: int = 1) -> int:
    """Give torch's forward passes this process's share of the cores (``processes`` share the
    machine), less one left to the gRPC threads; return the count. Forward passes run one at a
    time on the encoder thread, so nothing else competes for these threads: two threads on the
    shared 2-core VM encoded one text at 4/s, one thread at 60/s (every parallel region waits for
    a thread the scheduler has parked)."""
    import torch

    threads = max(1, len(os.sched_getaffinity(0)) // processes - 1)
    torch.set_num_threads(threads)
    return threads


class EncoderStoppedError(UnavailableError):
    """The server is stopping: its encoder thread takes no more work."""


@dataclass
class _Item:
    """One caller's input, to be run by ``run`` with up to ``max_batch`` others of its ``key``."""

    key: Hashable
    run: BatchFunction
    value: Any
    max_batch: int
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


@dataclass
class _Job:
    """A whole call to run on the thread as it is."""

    call: Callable[[], Any]
    future: Future = field(default_factory=Future)


class EncoderThread:
    """Runs batches of items and whole jobs on one thread, one at a time.

    Args:
        max_wait: how long (seconds) an item waits from its arrival for others of its kind.
    """

    def __init__(self, max_wait: float = MAX_WAIT_SECONDS) -> None:
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.max_wait = max_wait
        self.batches = 0  # calls of a batch function (one forward pass each)
        self.jobs = 0  # whole jobs run
        self._pending: deque[_Item | _Job] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(
        self, key: Hashable, run: BatchFunction, value: Any, max_batch: int = MAX_BATCH
    ) -> Future:
        """Queue ``value`` to be run by ``run`` with up to ``max_batch`` values of ``key`` in all;
        the future's result is its row of ``run``'s answer (``run`` returns one row per value,
        in order). Cancelling the future before its batch starts drops it."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        item = _Item(key, run, value, max_batch)
        self._put(item)
        return item.future

    def call(self, call: Callable[[], R]) -> R:
        """Run ``call`` on the thread, after what is queued before it, and return its result."""
        job = _Job(call)
        self._put(job)
        return job.future.result()

    def close(self) -> None:
        """Refuse new work, run what is queued, and end the thread."""
        with self._ready:
            self._stopped = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _put(self, work: _Item | _Job) -> None:
        with self._ready:
            if self._stopped:
                raise EncoderStoppedError("the server is stopping; retry on another server")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="mmgraph-encoder", daemon=True
                )
                self._thread.start()
            self._pending.append(work)
            self._ready.notify()

    def _loop(self) -> None:
        while True:
            with self._ready:
                work = self._next()
            if work is None:
                return
            if isinstance(work, _Job):
                if work.future.set_running_or_notify_cancel():
                    self.jobs += 1
                    _settle(work.future, work.call)
                continue
            batch = [item for item in work if item.future.set_running_or_notify_cancel()]
            if batch:
                self._run_batch(batch)

    def _next(self) -> _Job | list[_Item] | None:
        """The next job, or batch of items of the oldest item's kind once it is full or the
        oldest has waited ``max_wait``; ``None`` once stopped with nothing queued. Called with
        the lock held; waits on it."""
        while True:
            while not self._pending and not self._stopped:
                self._ready.wait()
            if not self._pending:
                return None
            first = self._pending[0]
            if isinstance(first, _Job):
                return self._pending.popleft()
            same = [w for w in self._pending if isinstance(w, _Item) and w.key == first.key]
            left = first.arrived + self.max_wait - time.monotonic()
            if len(same) >= first.max_batch or left <= 0 or self._stopped:
                taken = same[: first.max_batch]
                ids = {id(item) for item in taken}
                self._pending = deque(w for w in self._pending if id(w) not in ids)
                return taken
            self._ready.wait(left)

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


def _settle(future: Future, call: Callable[[], Any]) -> None:
    try:
        future.set_result(call())
    except Exception as e:
        future.set_exception(e)
