"""Batch ingestion: validate records, encode modalities, upsert in atomic batches, audit.

Guarantees:

- A record that fails validation (schema, a type clash with the stored graph or an earlier record
  of the input, a vector dimension clash, a malformed ``data:`` image URI or, for a run that
  allows no image paths, an image that names a file, a relation endpoint that is neither stored
  nor an item of the input, or is an item this run refused) is written to the run's quarantine
  file with its location, field and reason; every good record is written.
- An item whose picture cannot be used (unreadable, undecodable, more pixels than
  ``max_image_pixels``, refused from its header before any decode) is written without it, its
  other modalities and relations kept, and the refusal is a ``warning`` line of the quarantine
  file (counted in the result's ``warnings`` and the run's ``:IngestRun``); a run for a caller
  whose reply cannot carry warnings (``keep_items_without_image=False``) refuses the item.
- Memory is bounded by ``batch_size``, not by the input: records are read, validated, encoded and
  written ``batch_size`` items at a time (images decoded 64 at a time), at most two batches held
  (one written on the writer's thread while the next is prepared). What a run must remember
  of its whole input lives in a temporary SQLite file, deleted when the run ends: each item uid's
  type and first location (type clashes across the whole input), which uids were written, every
  relation (written after all items, so a relation may name an item later in the input), and, on
  the first run that brings numbers of a node type, those numbers until their standardisation is
  fitted on all of them. In memory stay only per-(type, vector name) dimensions, per-type number
  statistics, and the uids of quarantined items.
- Each write batch is one transaction: a batch that fails part-way leaves nothing of itself.
  Batches are written one at a time, in input order.
- Writes are ``MERGE`` on uid and on (start, type, end), so re-running an input changes no counts,
  and a run cut short (by a dead database, say) can simply be run again to completion.
- Each run leaves an ``:IngestRun`` node (:mod:`mmgraph.graph.audit`): source, inputs with
  their SHA-256 (computed while each file is read), pid and host, times in UTC, status and
  counts.

The run's rooms: options and results (:mod:`.options`), the shared read-validate-batch loop
(:mod:`.stream`) and validation against the rest of the input (:mod:`.validator`), the scratch
file (:mod:`.scratch`), numeric standardisation (:mod:`.numbers`), encoding (:mod:`.encoding`),
the quarantine (:mod:`.quarantine`), hashed input files (:mod:`.files`) and the writer's thread
(:mod:`.writer`); this module runs them against the graph. The bulk first load (:mod:`.bulk`)
runs the same loop into the offline importer's files.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmgraph.core.errors import MmgraphError, UnavailableError
from mmgraph.graph import audit
from mmgraph.graph.store import BatchResult, GraphStore, NodeRow, RelRow, TypeConflictError
from mmgraph.ingest.encoding import Encoders, encode_items
from mmgraph.ingest.heap import fewer_collections
from mmgraph.ingest.numbers import GraphFits, HeldVectors, NumberEncoders
from mmgraph.ingest.options import IngestError, IngestOptions, IngestResult
from mmgraph.ingest.progress import ProgressListener
from mmgraph.ingest.quarantine import Quarantine, Refusal
from mmgraph.ingest.readers import RawRecord
from mmgraph.ingest.records import Location, RecordError
from mmgraph.ingest.scratch import HeldRelation, Scratch
from mmgraph.ingest.stream import ItemBatch, RunInput, endpoint_error, stream_records
from mmgraph.ingest.timings import add_time
from mmgraph.ingest.writer import BackgroundWriter

log = logging.getLogger(__name__)


def new_run_id(now: datetime | None = None) -> str:
    """A run id: the UTC start time and a random suffix, e.g. ``20261125T101500Z-1a2b3c4d``."""
    return f"{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


def ingest_files(
    store: GraphStore,
    paths: Sequence[Path],
    options: IngestOptions,
    encoders: Encoders | None = None,
    run_props: Mapping[str, Any] | None = None,
    on_refusal: Callable[[Refusal], None] | None = None,
    progress: ProgressListener | None = None,
) -> IngestResult:
    """Ingest batch files (JSONL, CSV, Parquet) as one run; images resolve beside each file.

    Each file is read once and hashed as it is read; the run's ``:IngestRun`` gets ``inputs``
    (``"<path> sha256:<hex>"``) and ``sha256s`` (the hex digests) when it ends. ``run_props``:
    extra properties for the ``:IngestRun`` node (Neo4j property values); ``on_refusal``: called
    with each quarantined record as it is refused; ``progress``: told how far the run is.
    """
    source = RunInput.files(paths)
    return _run(store, source, options, encoders, run_props, on_refusal, progress)


def ingest(
    store: GraphStore,
    records: Iterable[RawRecord],
    source: str,
    options: IngestOptions,
    encoders: Encoders | None = None,
    inputs: Sequence[str] = (),
    run_props: Mapping[str, Any] | None = None,
    on_refusal: Callable[[Refusal], None] | None = None,
    progress: ProgressListener | None = None,
) -> IngestResult:
    """Validate, encode and write ``records`` as one audited run (see the module's guarantees).

    ``records`` is consumed once, as a stream. An image may come as bytes, a ``data:`` URI with
    base64 bytes, or a path (refused by a run with ``allow_image_paths=False``). ``encoders``:
    those of the caller (default: fp32 text, on torch's default device); ``on_refusal``: called
    with each quarantined record as it is refused; ``progress``: told how far the run is.
    """
    given = RunInput.stream(records, source, inputs)
    return _run(store, given, options, encoders, run_props, on_refusal, progress)


def _run(
    store: GraphStore,
    source: RunInput,
    options: IngestOptions,
    encoders: Encoders | None,
    run_props: Mapping[str, Any] | None,
    on_refusal: Callable[[Refusal], None] | None,
    progress: ProgressListener | None,
) -> IngestResult:
    run_id = new_run_id()
    result = IngestResult(run_id)
    quarantine = Quarantine(options.quarantine_dir, run_id, on_refusal)
    started = time.perf_counter()
    ledger = source.ledger
    store.setup_schema()
    audit.start_run(store, run_id, source.source, **run_properties(options, ledger(), run_props))
    try:
        with Scratch() as scratch, BackgroundWriter() as writer, fewer_collections():
            sink = StoreSink(
                store, options, encoders or Encoders(), scratch, quarantine, result, writer
            )
            stream_records(source, sink, options, scratch, quarantine, result, progress)
    except MmgraphError as e:
        # An error of one of the kinds (a dead database, say) stopped the run: the audit trail
        # records it as failed, and a rerun completes it.
        _finish(store, result, quarantine, started, ledger(), failed=True)
        raise IngestError(f"ingest run {run_id} stopped: {e}", result) from e
    except BaseException:
        # A bug, or an interrupt: recorded as failed too, and raised as it is.
        _finish(store, result, quarantine, started, ledger(), failed=True)
        raise
    _finish(store, result, quarantine, started, ledger(), failed=False)
    return result


def run_properties(
    options: IngestOptions, ledger: dict[str, Any], run_props: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The properties of a run's ``:IngestRun`` besides its id, source, times and counts."""
    return {
        **(run_props or {}),
        **ledger,
        "batch_size": options.batch_size,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }


def settle(result: IngestResult, quarantine: Quarantine, started: float, failed: bool) -> None:
    """Fill in how a run ended: what it refused, how long it took, its status."""
    result.quarantined = quarantine.count
    result.warnings = quarantine.warnings
    result.quarantine_file = quarantine.path if quarantine.count or quarantine.warnings else None
    result.seconds = time.perf_counter() - started
    if failed or (quarantine.count and not (result.nodes_written or result.relationships_written)):
        result.status = "failed"
    else:
        # Partial: some of the input is not in the graph, whole records or refused pictures.
        result.status = "partial" if quarantine.count or quarantine.warnings else "ok"


def _finish(
    store: GraphStore,
    result: IngestResult,
    quarantine: Quarantine,
    started: float,
    ledger: dict[str, Any],
    failed: bool,
) -> None:
    settle(result, quarantine, started, failed)
    try:
        audit.finish_run(
            store,
            result.run_id,
            result.status,
            result.counts(),
            quarantine_file=str(result.quarantine_file) if result.quarantine_file else None,
            **ledger,
        )
    except UnavailableError as e:
        # The database is gone: the run stays "running" in the audit trail, which is the truth.
        log.error("could not record the end of run %s: %s", result.run_id, e)


class StoreSink:
    """Writes a run into the graph, one transaction per batch, each on the writer's thread
    while the next batch is read, validated and encoded. An item whose uid turns out stored
    with another type is quarantined and its batch written again without it."""

    merges = True

    def __init__(
        self,
        store: GraphStore,
        options: IngestOptions,
        encoders: Encoders,
        scratch: Scratch,
        quarantine: Quarantine,
        result: IngestResult,
        writer: BackgroundWriter,
    ) -> None:
        self.store = store
        self.options = options
        self.encoders = encoders
        self.scratch = scratch
        self.quarantine = quarantine
        self.result = result
        self.writer = writer
        self.numbers = NumberEncoders(GraphFits(store), scratch)

    def stored_dimension(self, node_type: str, name: str) -> int | None:
        return self.store.vector_dimension(node_type, name)

    def write_items(self, batch: ItemBatch, repeats: set[Location]) -> None:
        # Only text and pictures are skipped when unchanged, so only their items' stored state
        # is read, and after the write in flight if that write holds any of them.
        asked = [
            item.uid for _, item, _ in batch if item.text is not None or item.image is not None
        ]
        if self.writer.writing(asked):
            self.writer.wait()
        states = self.store.node_states(asked) if asked else {}
        good = []
        for location, item, raw in batch:
            state = states.get(item.uid)
            if state is not None and state.type != item.type:
                self._refuse(location, item.uid, state.type, raw)
            else:
                good.append((location, item, raw))
        encoded = encode_items(
            good,
            states,
            self.options,
            self.encoders,
            self.numbers,
            self.quarantine,
            self.result.timings,
        )
        rows = [row for _, row in encoded]
        sources: dict[str, list[tuple[Location, Any]]] = {}
        for location, item, raw in good:
            sources.setdefault(item.uid, []).append((location, raw))
        self.writer.submit(
            lambda: self._write(rows),
            lambda outcome: self._written(outcome, rows, sources),
            [row.uid for row in rows],
        )

    def finish_items(self) -> None:
        for held in self.numbers.held_vectors(self.options.batch_size, self.result.timings):
            self.writer.submit(lambda held=held: self._set_vectors(held), _nothing)
        # Every item is written, and noted so, before relation endpoints are looked up.
        self.writer.wait()

    def write_relations(self, batch: list[HeldRelation]) -> None:
        refused = self.quarantine.rejected
        unknown = {
            uid
            for held in batch
            for uid, written in ((held.row.src, held.src_written), (held.row.dst, held.dst_written))
            if not written and uid not in refused
        }
        present = self.store.existing_types(unknown) if unknown else {}
        rows = []
        for held in batch:
            error = endpoint_error(held, present, refused)
            if error is not None:
                self.quarantine.add(error, held.raw())
            else:
                rows.append(held.row)
        self.writer.submit(lambda: self._write_relationships(rows), self._relationships_written)

    def finish(self) -> None:
        self.writer.wait()
        self.result.timings["wait_for_writes"] = self.writer.waited

    def _write(self, rows: list[NodeRow]) -> BatchResult | TypeConflictError:
        t0 = time.perf_counter()
        try:
            return self.store.write_batch(rows, [], self.result.run_id or "")
        except TypeConflictError as conflict:
            return conflict
        finally:
            add_time(self.result.timings, "write_nodes", t0)

    def _written(
        self,
        outcome: BatchResult | TypeConflictError,
        rows: list[NodeRow],
        sources: dict[str, list[tuple[Location, Any]]],
    ) -> None:
        if isinstance(outcome, TypeConflictError):
            # Nothing of the batch was written: refuse the clashing items, write the others.
            for uid, stored in outcome.conflicts.items():
                for location, raw in sources[uid]:
                    self._refuse(location, uid, stored, raw)
            rows = [row for row in rows if row.uid not in outcome.conflicts]
            outcome = self._write(rows)
            if isinstance(outcome, TypeConflictError):  # stored meanwhile by another writer
                raise outcome
        self.result.nodes_written += outcome.nodes_written
        self.result.nodes_created += outcome.nodes_created
        self.scratch.mark_written(row.uid for row in rows)
        log.info("run %s: %d nodes written", self.result.run_id, self.result.nodes_written)

    def _refuse(self, location: Location, uid: str, stored: str, raw: Any) -> None:
        message = f"uid {uid!r} is stored as a {stored}"
        self.quarantine.add(RecordError(location, "type", message), raw)

    def _set_vectors(self, held: HeldVectors) -> None:
        t0 = time.perf_counter()
        self.store.set_vectors("num", held.type, held.tag, held.rows)
        add_time(self.result.timings, "write_held_vectors", t0)

    def _write_relationships(self, rows: list[RelRow]) -> BatchResult:
        t0 = time.perf_counter()
        try:
            return self.store.write_batch([], rows, self.result.run_id or "")
        finally:
            add_time(self.result.timings, "write_relationships", t0)

    def _relationships_written(self, written: BatchResult) -> None:
        result = self.result
        result.relationships_written += written.relationships_written
        result.relationships_created += written.relationships_created
        log.info("run %s: %d relationships written", result.run_id, result.relationships_written)


def _nothing(_: None) -> None:
    return None
