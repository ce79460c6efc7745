"""What every ingest run does to its input, whatever writes it: records read once, validated,
handed on ``batch_size`` items at a time, relations held in the scratch file until every item is
written, then handed on in batches too.

A :class:`Sink` writes: the graph itself through transactions (:mod:`.pipeline`) or the offline
importer's files (:mod:`.bulk`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mmgraph.ingest.files import HashedFiles
from mmgraph.ingest.options import IngestOptions, IngestResult
from mmgraph.ingest.progress import READING, RELATIONS, Progress, ProgressListener
from mmgraph.ingest.quarantine import Quarantine
from mmgraph.ingest.readers import RawRecord, check_file
from mmgraph.ingest.records import Item, Location, RecordError, Relation, parse_record
from mmgraph.ingest.scratch import HeldRelation, PlainRelation, Scratch
from mmgraph.ingest.timings import add_time, timed_batches
from mmgraph.ingest.validator import Validator

ItemBatch = list[tuple[Location, Item, Any]]


@dataclass(frozen=True)
class RunInput:
    """A run's input: its records (read once, as a stream), its source's name, its ledger for
    the audit trail (``inputs``, and files' ``sha256s`` once read), and how much of it was read
    and its size in bytes, when known."""

    records: Iterable[RawRecord]
    source: str
    ledger: Callable[[], dict[str, Any]]
    measure: Callable[[], tuple[int, int | None]] = lambda: (0, None)

    @classmethod
    def files(cls, paths: Sequence[Path]) -> RunInput:
        """Batch files (JSONL, CSV, Parquet), each hashed as it is read; a missing or unreadable
        file is refused before any is read."""
        for path in paths:
            check_file(path)
        files = HashedFiles(paths)
        source = ",".join(str(path) for path in paths)
        return cls(files.records(), source, files.ledger, files.progress)

    @classmethod
    def stream(
        cls, records: Iterable[RawRecord], source: str, inputs: Sequence[str] = ()
    ) -> RunInput:
        """A stream of records; ``inputs`` names what they came from, for the audit trail."""
        return cls(records, source, lambda: {"inputs": list(inputs)})


class Sink(Protocol):
    """Where a run's validated items and relations go."""

    #: Whether a uid or relation written twice is merged (``MERGE``); a sink that writes each
    #: once is told which items repeat an earlier uid and which relations repeat a key, and
    #: takes the plain relations (:meth:`Scratch.plain_relations`) first, as bare rows.
    merges: bool

    def stored_dimension(self, node_type: str, name: str) -> int | None:
        """The dimension of ``name`` vectors already stored for ``node_type``, if any."""

    def write_items(self, batch: ItemBatch, repeats: set[Location]) -> None:
        """Encode and write a batch of items; ``repeats``: the records among them whose uid came
        earlier in the run."""

    def finish_items(self) -> None:
        """Write what waited for the last item (vectors of first numeric fits)."""

    def write_relations(self, batch: list[HeldRelation]) -> None:
        """Write a batch of relations, refusing those whose endpoints are missing."""

    def write_plain_relations(self, batch: list[PlainRelation]) -> None:
        """(Asked only of a sink that does not merge.) Write a batch of plain relations."""

    def finish(self) -> None:
        """Wait until everything handed over is written."""


def stream_records(
    source: RunInput,
    sink: Sink,
    options: IngestOptions,
    scratch: Scratch,
    quarantine: Quarantine,
    result: IngestResult,
    progress: ProgressListener | None = None,
) -> int:
    """Validate ``source``'s records and hand them to ``sink``; return how many were read.
    ``progress`` hears after each batch how far the run is."""

    def report(stage: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(Progress(stage, read, done, total))

    validator = Validator(scratch, sink.stored_dimension, options.allow_image_paths)
    pending: ItemBatch = []
    repeats: set[Location] = set()
    read = 0
    t0 = time.perf_counter()
    for location, raw in source.records:
        read += 1
        try:
            if isinstance(raw, RecordError):
                raise raw
            record = parse_record(raw, location)
            if isinstance(record, Relation):
                scratch.hold_relation(location, record, raw)
                continue
            if validator.check(record, location):
                repeats.add(location)
            pending.append((location, record, raw))
        except RecordError as error:
            quarantine.add(error, raw)
        if len(pending) >= options.batch_size:
            add_time(result.timings, "validate", t0)
            sink.write_items(pending, repeats)
            pending, repeats = [], set()
            report(READING, *source.measure())
            t0 = time.perf_counter()
    add_time(result.timings, "validate", t0)
    if pending:
        sink.write_items(pending, repeats)
    report(READING, *source.measure())
    sink.finish_items()
    total, done = scratch.relation_count(), 0
    report(RELATIONS, done, total)
    size, timings = options.batch_size, result.timings
    if not sink.merges:
        t0 = time.perf_counter()
        plain = scratch.plain_relations()  # first finds the keys that repeat (a pass of its own)
        add_time(timings, "read_relations", t0)
        for batch in timed_batches(plain, size, timings, "read_relations"):
            sink.write_plain_relations(batch)
            done += len(batch)
            report(RELATIONS, done, total)
    if done < total:  # some were not plain: found by another pass over them all
        relations = scratch.relations(flag_repeats=not sink.merges, plain=sink.merges)
        for batch in timed_batches(relations, size, timings, "read_relations"):
            sink.write_relations(batch)
            done += len(batch)
            report(RELATIONS, done, total)
    sink.finish()
    return read


def endpoint_error(
    held: HeldRelation, present: Iterable[str], refused: set[str]
) -> RecordError | None:
    """Why ``held`` cannot be written, if it cannot: an endpoint neither written by this run
    nor ``present`` in the graph, or one that this run ``refused``."""
    for side, uid, written in (
        ("src", held.row.src, held.src_written),
        ("dst", held.row.dst, held.dst_written),
    ):
        if written:
            continue
        if uid in refused:
            return RecordError(held.location, side, f"item {uid!r} was quarantined in this run")
        if uid not in present:
            return RecordError(held.location, side, f"no item {uid!r} in the graph or the input")
    return None
