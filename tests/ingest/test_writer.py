"""The background writer: one write at a time, done callbacks in order on the caller's thread,
a failed write raised where the caller waits."""

from __future__ import annotations

import threading

import pytest

from mmgraph.ingest.writer import BackgroundWriter


def test_writes_run_one_at_a_time_and_report_in_order() -> None:
    caller = threading.get_ident()
    release = threading.Event()
    done: list[tuple[int, int]] = []
    with BackgroundWriter() as writer:
        writer.submit(
            lambda: release.wait(5) and 1, lambda v: done.append((v, threading.get_ident())), ["a"]
        )
        assert writer.writing(["a", "z"]) and not writer.writing(["z"])
        assert done == []  # the first write still runs
        release.set()
        writer.submit(lambda: 2, lambda v: done.append((v, threading.get_ident())), ["b"])
        assert done == [(1, caller)]  # submitting waited for the write before
        writer.wait()
    assert done == [(1, caller), (2, caller)]
    assert not writer.writing(["b"])


def test_a_failed_write_raises_where_the_caller_waits() -> None:
    def fail() -> None:
        raise ValueError("refused")

    after: list[int] = []
    with BackgroundWriter() as writer:
        writer.submit(fail, after.append)
        with pytest.raises(ValueError, match="refused"):
            writer.submit(lambda: 2, after.append)
    assert after == []
