"""The bulk first load: a run's validated, encoded records written as the files of Neo4j's
offline importer (:mod:`mmgraph.graph.import_files`; the node files by a worker process,
:mod:`.node_files`) and imported into the empty local database (:mod:`mmgraph.graph.bulk_load`),
giving the graph a transactional run would write.

Validation, quarantine and encoding are those of every run (:mod:`.stream`). What the importer
cannot do is done by the transactional upsert once the import is done, in input order: an item
whose uid came earlier in the input (the importer takes each uid once; the upsert merges), a
relation whose (src, type, dst) may repeat (all its occurrences), values CSV cannot carry (see
:mod:`mmgraph.graph.import_files`), and ``num`` vectors of a uid's later occurrences. Items
awaiting their type's first numeric fit are formatted at once and held, with their numbers, by
the node files' worker until it is known, then written with their ``num`` vector. After the
import come the schema, the kept fits, those
writes and the run's ``:IngestRun`` (recorded only then: until the import the database is
untouched, so a run that stops before it changes nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from mmgraph.core.config import Settings
from mmgraph.core.errors import MmgraphError
from mmgraph.graph import audit
from mmgraph.graph.bulk_load import LocalBulkLoad
from mmgraph.graph.encoder_state import put_state_once
from mmgraph.graph.import_files import ImportFiles, ImportGroup
from mmgraph.graph.store import GraphStore, NodeRow, RelRow
from mmgraph.ingest.encoding import Encoders, encode_items
from mmgraph.ingest.heap import fewer_collections
from mmgraph.ingest.node_files import NodeFilesWriter
from mmgraph.ingest.numbers import HeldVectors, NumberEncoders
from mmgraph.ingest.options import IngestError, IngestOptions, IngestResult
from mmgraph.ingest.pipeline import new_run_id, run_properties, settle
from mmgraph.ingest.progress import FINISHING, IMPORTING, Progress, ProgressListener
from mmgraph.ingest.quarantine import Quarantine
from mmgraph.ingest.readers import RawRecord, batched
from mmgraph.ingest.records import Item, Location
from mmgraph.ingest.scratch import HeldRelation, PlainRelation, Scratch, pack, unpack
from mmgraph.ingest.stream import ItemBatch, RunInput, endpoint_error, stream_records
from mmgraph.ingest.timings import add_time

log = logging.getLogger(__name__)


def bulk_ingest_files(
    settings: Settings,
    paths: Sequence[Path],
    options: IngestOptions,
    encoders: Encoders | None = None,
    progress: ProgressListener | None = None,
) -> IngestResult:
    """Load batch files (JSONL, CSV, Parquet) as one run into the empty local database of
    ``settings`` (see the module); refused before anything is read when it may not be loaded
    (:class:`~mmgraph.graph.bulk_load.BulkLoadRefusedError`)."""
    return _run(settings, RunInput.files(paths), options, encoders, progress)


def bulk_ingest(
    settings: Settings,
    records: Iterable[RawRecord],
    source: str,
    options: IngestOptions,
    encoders: Encoders | None = None,
    progress: ProgressListener | None = None,
) -> IngestResult:
    """Load a stream of records as one run into the empty local database of ``settings``."""
    return _run(settings, RunInput.stream(records, source), options, encoders, progress)


def _run(
    settings: Settings,
    source: RunInput,
    options: IngestOptions,
    encoders: Encoders | None,
    progress: ProgressListener | None,
) -> IngestResult:
    run_id = new_run_id()
    result = IngestResult(run_id)
    quarantine = Quarantine(options.quarantine_dir, run_id)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    with LocalBulkLoad(settings) as target:
        try:
            with (
                NodeFilesWriter(target.work, run_id) as node_files,
                Scratch() as scratch,
                fewer_collections(),
            ):
                files = ImportFiles(target.work, run_id)
                sink = ImportSink(
                    files, node_files, options, encoders or Encoders(), scratch, quarantine, result
                )
                read = stream_records(source, sink, options, scratch, quarantine, result, progress)
                if progress is not None:
                    progress(Progress(IMPORTING, read))
                groups = sink.close_files()
                t0 = time.perf_counter()
                report = target.load(*groups)
                result.timings["import"] = report.seconds
                result.timings["restart"] = time.perf_counter() - t0 - report.seconds
                if progress is not None:
                    progress(Progress(FINISHING, read))
                store = target.store()
                sink.after_import(store)
            settle(result, quarantine, started, failed=False)
            props = run_properties(options, source.ledger(), {"mode": "bulk"})
            audit.start_run(store, run_id, source.source, started=started_at, **props)
            audit.finish_run(
                store,
                run_id,
                result.status,
                result.counts(),
                quarantine_file=str(result.quarantine_file) if result.quarantine_file else None,
                imported_nodes=report.nodes,
                imported_relationships=report.relationships,
            )
        except MmgraphError as e:
            settle(result, quarantine, started, failed=True)
            raise IngestError(f"bulk ingest run {run_id} stopped: {e}", result) from e
    return result


class MemoryFits:
    """The first numeric fits of a load into an empty database, kept in memory until the
    database exists (then :meth:`ImportSink.after_import` keeps them in the graph)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def kept(self, key: str) -> str | None:
        return self.values.get(key)

    def keep(self, key: str, value: str) -> str:
        return self.values.setdefault(key, value)


class ImportSink:
    """Writes a run as the importer's files (relationships here, nodes through ``node_files``),
    and what they cannot hold into the scratch file, for :meth:`after_import` (see the module)."""

    merges = False

    def __init__(
        self,
        files: ImportFiles,
        node_files: NodeFilesWriter,
        options: IngestOptions,
        encoders: Encoders,
        scratch: Scratch,
        quarantine: Quarantine,
        result: IngestResult,
    ) -> None:
        self.files = files
        self.node_files = node_files
        self.options = options
        self.encoders = encoders
        self.scratch = scratch
        self.quarantine = quarantine
        self.result = result
        self.fits = MemoryFits()
        self.numbers = NumberEncoders(self.fits, scratch, hold=False)
        self.held = _Held(scratch)
        self.position = 0

    def stored_dimension(self, node_type: str, name: str) -> int | None:
        return None  # the database is empty

    def write_items(self, batch: ItemBatch, repeats: set[Location]) -> None:
        t = self.result.timings
        rows = encode_items(
            batch, {}, self.options, self.encoders, self.numbers, self.quarantine, t
        )
        t0 = time.perf_counter()
        awaiting: dict[Location, Item] = {
            location: item
            for location, item, _ in batch
            if item.numbers and self.numbers.kept.get(item.type) is None
        }
        now, held = [], []
        for location, row in rows:
            self.position += 1
            if location in repeats:
                self.held.later_node(self.position, row)
                if location in awaiting:  # its num vector, once known, is set after the import
                    self.scratch.hold_numbers(awaiting[location])
            elif location in awaiting:
                held.append((self.position, row, awaiting[location].numbers))
            else:
                now.append((self.position, row))
        for position, row in self.node_files.hold(held):
            self.held.later_node(position, row)
        self.result.nodes_created += len(held)
        self.scratch.mark_written(row.uid for _, row in rows)
        add_time(t, "hold", t0)
        self._write_nodes(now)
        self.result.nodes_written += len(rows)

    def finish_items(self) -> None:
        t = self.result.timings
        for vectors in self.numbers.held_vectors(self.options.batch_size, t):
            t0 = time.perf_counter()
            self.held.later_vectors_of(vectors)
            add_time(t, "hold", t0)
        # The worker writes the held rows with their num vectors while the relations go on.
        self.node_files.release(self.numbers.first_fits())

    def write_relations(self, batch: list[HeldRelation]) -> None:
        rows = []
        for held in batch:
            error = endpoint_error(held, (), self.quarantine.rejected)
            if error is not None:
                self.quarantine.add(error, held.raw())
            elif held.repeated:
                self.held.later_relationship(held.row)
                self.result.relationships_written += 1
            else:
                rows.append(held.row)
        t0 = time.perf_counter()
        for row in self.files.add_relationships(rows):
            self.held.later_relationship(row)
        add_time(self.result.timings, "write_files", t0)
        self.result.relationships_written += len(rows)
        self.result.relationships_created += len(rows)

    def write_plain_relations(self, batch: list[PlainRelation]) -> None:
        t0 = time.perf_counter()
        self.files.add_plain_relationships(batch)
        add_time(self.result.timings, "write_files", t0)
        self.result.relationships_written += len(batch)
        self.result.relationships_created += len(batch)

    def finish(self) -> None:
        return None

    def after_import(self, store: GraphStore) -> None:
        """The writes that follow the import: the schema, the first fits, then in input order
        what the importer could not write (see the module)."""
        t0 = time.perf_counter()
        store.setup_schema()
        add_time(self.result.timings, "schema", t0)
        t0 = time.perf_counter()
        for key, value in self.fits.values.items():
            put_state_once(store, key, value)
        run_id, size = self.result.run_id or "", self.options.batch_size
        for nodes in batched(self.held.later_nodes(), size):
            self.result.nodes_created += store.write_batch(nodes, [], run_id).nodes_created
        for held in self.held.later_vectors(size):
            store.set_vectors("num", held.type, held.tag, held.rows)
        for relationships in batched(self.held.later_relationships(), size):
            written = store.write_batch([], relationships, run_id)
            self.result.relationships_created += written.relationships_created
        add_time(self.result.timings, "write_after_import", t0)

    def close_files(self) -> tuple[list[ImportGroup], list[ImportGroup]]:
        """End the import's files once every record is handed over; the node groups and the
        relationship groups to import."""
        t0 = time.perf_counter()
        node_groups, later = self.node_files.close()
        for position, row in later:
            self.held.later_node(position, row)
        nodes, relationships = self.files.close()
        add_time(self.result.timings, "write_files", t0)
        return [*nodes, *node_groups], relationships

    def _write_nodes(self, rows: list[tuple[int, NodeRow]]) -> None:
        t0 = time.perf_counter()
        for position, row in self.node_files.add(rows):
            self.held.later_node(position, row)
        self.result.nodes_created += len(rows)
        add_time(self.result.timings, "write_files", t0)


class _Held:
    """What a load writes by the upsert after the import, in the scratch file (ordered by input
    position)."""

    def __init__(self, scratch: Scratch) -> None:
        self.db = scratch.db
        # One statement at a time: executescript would commit the scratch file's one transaction,
        # and every write after it would be a transaction of its own (14 us an insert, not 2).
        for table in (
            "later_nodes (position INTEGER, row BLOB)",
            "later_vectors (type TEXT, tag TEXT, uid TEXT, vec BLOB)",
            "later_relationships (row BLOB)",
        ):
            self.db.execute(f"CREATE TABLE {table}")

    def later_vectors_of(self, held: HeldVectors) -> None:
        """Keep ``num`` vectors for after the import: those of a uid's later occurrences (its
        first, if held, has the vector of its own numbers, which the later ones replace)."""
        self.db.executemany(
            "INSERT INTO later_vectors VALUES (?, ?, ?, ?)",
            ((held.type, held.tag, uid, pack(vector)) for uid, vector in held.rows),
        )

    def later_node(self, position: int, row: NodeRow) -> None:
        self.db.execute("INSERT INTO later_nodes VALUES (?, ?)", (position, pack(row)))

    def later_relationship(self, row: RelRow) -> None:
        self.db.execute("INSERT INTO later_relationships VALUES (?)", (pack(row),))

    def later_nodes(self) -> Iterator[NodeRow]:
        query = "SELECT row FROM later_nodes ORDER BY position, rowid"
        return (unpack(packed) for (packed,) in self.db.execute(query))

    def later_vectors(self, size: int) -> Iterator[HeldVectors]:
        query = "SELECT type, tag, uid, vec FROM later_vectors ORDER BY rowid"
        for batch in batched(self.db.execute(query), size):
            for (type_name, tag), rows in _grouped(batch).items():
                yield HeldVectors(type_name, tag, rows)

    def later_relationships(self) -> Iterator[RelRow]:
        query = "SELECT row FROM later_relationships ORDER BY rowid"
        return (unpack(packed) for (packed,) in self.db.execute(query))


def _grouped(batch: Sequence[tuple[str, str, str, bytes]]) -> Mapping[tuple[str, str], list]:
    groups: dict[tuple[str, str], list] = {}
    for type_name, tag, uid, vec in batch:
        groups.setdefault((type_name, tag), []).append((uid, unpack(vec)))
    return groups
