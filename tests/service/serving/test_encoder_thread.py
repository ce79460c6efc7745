"""EncoderThread: what queues while a batch runs is run together, each caller gets its own row or
its batch's error, whole jobs wait their turn, and a second lane runs while the first is busy. A
job that blocks on an event holds its lane, so what is queued behind it is known without timing
anything."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from mmgraph.service.serving.encoder_thread import (
    EncoderStoppedError,
    EncoderThread,
    ForwardPlan,
    forward_plan,
)


@pytest.fixture
def thread() -> Iterator[EncoderThread]:
    worker = EncoderThread(max_wait=0.0)
    yield worker
    worker.close()


def _hold(worker: EncoderThread) -> tuple[threading.Event, threading.Thread]:
    """Occupy the worker with a job until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait()

    holder = threading.Thread(target=worker.call, args=(job,))
    holder.start()
    started.wait()
    return release, holder


def _double(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)[:, None] * 2


def test_what_queues_behind_a_busy_thread_runs_as_batches_of_at_most_max_batch(
    thread: EncoderThread,
) -> None:
    calls: list[list[float]] = []

    def run(values: list[float]) -> np.ndarray:
        calls.append(list(values))
        return _double(values)

    release, holder = _hold(thread)
    futures = [thread.submit("x", run, float(i), max_batch=4) for i in range(6)]
    release.set()
    holder.join()
    assert [f.result().tolist() for f in futures] == [[[2.0 * i]] for i in range(6)]
    assert calls == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0]]
    assert thread.batches == 2 and thread.jobs == 1


def test_each_key_runs_in_its_own_batch(thread: EncoderThread) -> None:
    seen: dict[str, list[float]] = {}

    def run_as(key: str):
        def run(values: list[float]) -> np.ndarray:
            seen[key] = list(values)
            return _double(values)

        return run

    release, holder = _hold(thread)
    a = [thread.submit("a", run_as("a"), v) for v in (1.0, 2.0)]
    b = thread.submit("b", run_as("b"), 3.0)
    release.set()
    holder.join()
    assert seen == {"a": [1.0, 2.0], "b": [3.0]}
    assert [f.result()[0, 0] for f in (*a, b)] == [2.0, 4.0, 6.0]


def test_a_failed_batch_fails_each_of_its_callers_and_the_thread_goes_on(
    thread: EncoderThread,
) -> None:
    def broken(values: list[float]) -> np.ndarray:
        raise RuntimeError("forward pass failed")

    release, holder = _hold(thread)
    failed = [thread.submit("x", broken, v) for v in (1.0, 2.0)]
    release.set()
    holder.join()
    for future in failed:
        with pytest.raises(RuntimeError, match="forward pass failed"):
            future.result()
    assert thread.submit("x", _double, 5.0).result()[0, 0] == 10.0


def test_a_cancelled_item_is_not_run(thread: EncoderThread) -> None:
    ran: list[float] = []

    def run(values: list[float]) -> np.ndarray:
        ran.extend(values)
        return _double(values)

    release, holder = _hold(thread)
    dropped = thread.submit("x", run, 1.0)
    kept = thread.submit("x", run, 2.0)
    assert dropped.cancel()
    release.set()
    holder.join()
    assert kept.result()[0, 0] == 4.0 and ran == [2.0]


def test_a_job_returns_its_result_and_raises_its_error(thread: EncoderThread) -> None:
    assert thread.call(lambda: threading.current_thread().name) == "mmgraph-encoder-0"
    with pytest.raises(ZeroDivisionError):
        thread.call(lambda: 1 / 0)


def test_a_second_lane_runs_batches_while_the_first_is_busy() -> None:
    worker = EncoderThread(max_wait=0.0, lanes=2)
    release, holder = _hold(worker)
    try:
        assert worker.submit("x", _double, 3.0).result(timeout=30)[0, 0] == 6.0
    finally:
        release.set()
        holder.join()
        worker.close()
    assert worker.batches == 1 and worker.jobs == 1


def test_the_plan_gives_each_core_a_one_thread_lane_on_the_cpu_and_one_lane_on_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(8)))
    assert forward_plan(1, "cpu") == ForwardPlan(lanes=8, threads=1)
    assert forward_plan(2, "cpu") == ForwardPlan(lanes=4, threads=1)
    assert forward_plan(16, "cpu") == ForwardPlan(lanes=1, threads=1)
    assert forward_plan(2, "cuda") == ForwardPlan(lanes=1, threads=4)


def test_closing_runs_what_is_queued_then_refuses_work() -> None:
    worker = EncoderThread()
    release, holder = _hold(worker)
    queued = worker.submit("x", _double, 1.0)
    closing = threading.Thread(target=worker.close)
    closing.start()
    release.set()
    holder.join()
    closing.join()
    assert queued.result()[0, 0] == 2.0
    with pytest.raises(EncoderStoppedError):
        worker.submit("x", _double, 1.0)
