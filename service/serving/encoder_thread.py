"""The threads ("lanes") that run every forward pass of a server's encoders.

Items of one kind that arrive together run in one batch: the oldest waiting item waits at most
``max_wait`` seconds from its arrival for others of its kind (what queued while every lane was
busy has waited already, and goes at once), up to its kind's batch size; the batch runs in one
call and each caller gets its row. Whole jobs (``Ingest``'s batches) queue with the items in
arrival order. Each lane takes the next batch or job from the one queue when it is free, so at
most ``lanes`` forward passes run at once: one lane per core, each pass on one core
(:func:`forward_plan`).
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


@dataclass(frozen=True)
class ForwardPlan:
    """How a server process runs its forward passes: ``lanes`` passes side by side, each on
    ``threads`` cores (torch's and onnxruntime's intra-op threads)."""

    lanes: int
    threads: int


def forward_plan(processes: int = 1, device: str = "cpu") -> ForwardPlan:
    """This process's share of the cores (``processes`` share the machine) as lanes of one
    thread each; on a GPU, one lane (the device runs one pass at a time; batching is what pays
    there) with this process's share of the cores for what stays on the CPU.

    Query batches are small, and a small batch gains little from a second intra-op thread but
    nearly doubles on a second core of its own. On the shared 2-core VM: MiniLM (fp32, torch)
    in batches of 8 encoded 416 texts/s on one thread, 504/s on two, and 758/s as two passes
    side by side on one thread each; EfficientNet-Lite0 (onnxruntime) one picture at a time
    201/s on one thread, 236/s on two, 403/s as two one-thread passes side by side (its best on
    two threads, in fours: 322/s). A one-thread pass also never waits at a barrier for a sibling
    thread the scheduler has parked (two torch threads once encoded one text at 4/s there).
    The gRPC threads get no core of their own: under 8 callers, one lane (a core left to them)
    answered 220 text and 187 picture queries/s (p99 50 and 55 ms), two lanes 267 and 242/s
    (p99 48 and 52 ms).
    """
    cores = max(1, len(os.sched_getaffinity(0)) // processes)
    if device.startswith("cuda"):
        return ForwardPlan(lanes=1, threads=cores)
    return ForwardPlan(lanes=cores, threads=1)


def set_torch_threads(threads: int) -> None:
    """Give each of torch's forward passes ``threads`` intra-op threads (process-wide)."""
    import torch

    torch.set_num_threads(threads)


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
    """Runs batches of items and whole jobs on ``lanes`` threads, each one at a time.

    Args:
        max_wait: how long (seconds) an item waits from its arrival for others of its kind.
        lanes: how many batches or jobs may run at once (:func:`forward_plan`).
    """

    def __init__(self, max_wait: float = MAX_WAIT_SECONDS, lanes: int = 1) -> None:
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.max_wait = max_wait
        self.lanes = lanes
        self.batches = 0  # calls of a batch function (one forward pass each)
        self.jobs = 0  # whole jobs run
        self._pending: deque[_Item | _Job] = deque()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
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
        """Run ``call`` on a lane, after what is queued before it has started, and return its
        result."""
        job = _Job(call)
        self._put(job)
        return job.future.result()

    def close(self) -> None:
        """Refuse new work, run what is queued, and end the lanes."""
        with self._ready:
            self._stopped = True
            self._ready.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def _put(self, work: _Item | _Job) -> None:
        with self._ready:
            if self._stopped:
                raise EncoderStoppedError("the server is stopping; retry on another server")
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._loop, name=f"mmgraph-encoder-{i}", daemon=True)
                    for i in range(self.lanes)
                ]
                for thread in self._threads:
                    thread.start()
            self._pending.append(work)
            self._ready.notify_all()  # a lane waiting out a window may now have a full batch

    def _loop(self) -> None:
        while True:
            with self._ready:
                work = self._next()
            if work is None:
                return
            if isinstance(work, _Job):
                if work.future.set_running_or_notify_cancel():
                    with self._ready:
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
        with self._ready:
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
