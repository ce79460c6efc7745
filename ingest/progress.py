"""How far an ingest run is, for a progress bar: the stage, the records read, and the stage's
units done and in all when known (bytes of the input files while reading them, relations while
writing them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

READING = "reading"
RELATIONS = "relations"
IMPORTING = "importing"
FINISHING = "finishing"


@dataclass(frozen=True)
class Progress:
    """One report of a run's progress; ``total`` is ``None`` when the stage's size is unknown
    (a stream of records, the importer)."""

    stage: str
    records: int
    done: int = 0
    total: int | None = None


ProgressListener = Callable[[Progress], None]
