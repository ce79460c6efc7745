"""Seconds per stage of an ingest run, summed over its batches (``IngestResult.timings``)."""

from __future__ import annotations

import time


def add_time(timings: dict[str, float], key: str, since: float) -> None:
    """Add the seconds since ``since`` (a ``time.perf_counter()``) to ``timings[key]``."""
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - since
