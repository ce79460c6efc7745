"""JSONL relation lines validated ahead of a bulk load, by a process of their own: the load's own
process is the one core busy reading and validating its input, and relations are most of its
lines (five an item in the 1M benchmark).

A line that names ``"src"`` (a relation, almost always) is sent to a forked worker, which gives
back its outcome: the values the scratch file keeps of a relation
(:data:`~mmgraph.ingest.scratch.RelationValues`), an item as validated, or a refusal's field and
message. The load takes every line, with its outcome, in input order, so what it does with a line
(hold it, quarantine it, take it as an item) is what validating the line itself would do:
:func:`~mmgraph.ingest.records.parse_record` depends on the line alone, and a relation's key (a
hash of its (src, type, dst)) is the one the load would compute, the worker being its fork (one
hash secret). At most ``IN_FLIGHT``
chunks of ``CHUNK`` records are read ahead, so memory stays bounded. The worker is forked before
the run opens anything else, and ended on leaving, whatever happened.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

from mmgraph.ingest.readers import RawRecord
from mmgraph.ingest.records import Item, JsonText, Location, RecordError, Relation, parse_record
from mmgraph.ingest.scratch import RelationValues, relation_values

# Records read at a time, and chunks sent to the worker and not yet taken.
CHUNK = 2000
IN_FLIGHT = 4
# Where a line validated by the worker is said to come from (a refusal is named again by the
# load, at the line's own location).
_NOWHERE = Location("", 0)


@dataclass(frozen=True)
class Refused:
    """A line's refusal, as :class:`~mmgraph.ingest.records.RecordError` names it."""

    field: str
    message: str

    def error(self, location: Location) -> RecordError:
        return RecordError(location, self.field, self.message)


# A line's outcome; ``None`` for a line the load validates itself.
Outcome = RelationValues | Item | Refused | None


class LinesAhead:
    """A worker process validating JSONL relation lines ahead of the load (see the module)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self._pool = ProcessPoolExecutor(1, context)
        self._pool.submit(_started).result()  # forked now, not at the first chunk

    def __enter__(self) -> LinesAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(cancel_futures=True)

    def outcomes(self, records: Iterable[RawRecord]) -> Iterator[tuple[Location, Any, Outcome]]:
        """``records`` in order, each with its outcome (see the module)."""
        pending: deque[tuple[list[RawRecord], list[int], Future[list[Outcome]]]] = deque()
        iterator = iter(records)
        while chunk := list(islice(iterator, CHUNK)):
            ahead = [i for i, (_, raw) in enumerate(chunk) if _names_src(raw)]
            lines = [str(chunk[i][1]) for i in ahead]
            pending.append((chunk, ahead, self._pool.submit(_validate, lines)))
            if len(pending) > IN_FLIGHT:
                yield from _with_outcomes(*pending.popleft())
        while pending:
            yield from _with_outcomes(*pending.popleft())


def _names_src(raw: Any) -> bool:
    return isinstance(raw, JsonText) and '"src"' in raw


def _with_outcomes(
    chunk: list[RawRecord], ahead: list[int], future: Future[list[Outcome]]
) -> Iterator[tuple[Location, Any, Outcome]]:
    outcomes: list[Outcome] = [None] * len(chunk)
    for i, outcome in zip(ahead, future.result(), strict=True):
        outcomes[i] = outcome
    for (location, raw), outcome in zip(chunk, outcomes, strict=True):
        yield location, raw, outcome


def _started() -> None:
    return None


def _validate(lines: list[str]) -> list[Outcome]:
    """(In the worker.) Each line's outcome."""
    outcomes: list[Outcome] = []
    for line in lines:
        try:
            record = parse_record(JsonText(line), _NOWHERE)
        except RecordError as refused:
            outcomes.append(Refused(refused.field, refused.message))
            continue
        outcomes.append(relation_values(record) if isinstance(record, Relation) else record)
    return outcomes
