"""Fewer garbage collections while a run streams its input: each record leaves a few container
objects (dicts, lists, models) that live until their batch is written, and at Python's default
threshold (a collection every 700 allocations) the collector spent a fifth of validation time
walking them (1.2 s of 5.8 s over 100k items with 384-d vectors)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Allocations between young collections during a run: cyclic garbage waits at most this long.
RUN_THRESHOLD = 50_000

_lock = threading.Lock()
_runs = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the young generation's threshold to ``RUN_THRESHOLD`` while any run is inside (runs
    may overlap in a server), and restore the process's own when the last one leaves."""
    global _runs, _saved
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(RUN_THRESHOLD, _saved[0]), *_saved[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_saved)
