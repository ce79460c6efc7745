"""Seconds per stage of an ingest run, summed over its batches (``IngestResult.timings``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any


def add_time(timings: dict[str, float], key: str, since: float) -> None:
    """Add the seconds since ``since`` (a ``time.perf_counter()``) to ``timings[key]``."""
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - since


def timed_batches(
    items: Iterable[Any], size: int, timings: dict[str, float], key: str
) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter), the seconds spent making
    each (reading ``items``) added to ``timings[key]``; the caller's work between them is not."""
    iterator = iter(items)
    while True:
        t0 = time.perf_counter()
        batch = list(islice(iterator, size))
        add_time(timings, key, t0)
        if not batch:
            return
        yield batch
