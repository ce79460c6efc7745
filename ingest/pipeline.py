"""Batch ingestion: validate records, encode modalities, upsert in atomic batches, audit.

Guarantees:

- A record that fails validation (schema, a type clash with the stored graph or an earlier record
  of the input, a vector dimension clash, an image that is unreadable, has more pixels than
  ``max_image_pixels`` or, for a run that allows no image paths, names a file, a relation endpoint
  that is neither stored nor an item of the input, or is an item this run refused) is written to
  the run's quarantine file with its location, field and reason; every good record is written.
- Memory is bounded by ``batch_size``, not by the input: records are read, validated, encoded and
  written ``batch_size`` items at a time (images decoded 64 at a time). What a run must remember
  of its whole input lives in a temporary SQLite file, deleted when the run ends: each item uid's
  type and first location (type clashes across the whole input), which uids were written, every
  relation (written after all items, so a relation may name an item later in the input), and, on
  the first run that brings numbers of a node type, those numbers until their standardisation is
  fitted on all of them. In memory stay only per-(type, vector name) dimensions, per-type number
  statistics, and the uids of quarantined items.
- Each write batch is one transaction: a batch that fails part-way leaves nothing of itself.
- Writes are ``MERGE`` on uid and on (start, type, end), so re-running an input changes no counts,
  and a run cut short (by a dead database, say) can simply be run again to completion.
- Each run leaves an ``:IngestRun`` node (:mod:`mmgraph.graph.audit`): source, inputs with
  their SHA-256 (computed while each file is read), pid and host, times in UTC, status and
  counts.

The run's rooms: options and results (:mod:`.options`), validation against the rest of the input
(:mod:`.validator`), the scratch file (:mod:`.scratch`), numeric standardisation
(:mod:`.numbers`), encoding (:mod:`.encoding`), the quarantine (:mod:`.quarantine`) and hashed
input files (:mod:`.files`); this module runs them in order.
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
from mmgraph.graph.store import GraphStore, RelRow
from mmgraph.ingest.encoding import Encoders, encode_items
from mmgraph.ingest.files import HashedFiles
from mmgraph.ingest.numbers import NumberEncoders
from mmgraph.ingest.options import IngestError, IngestOptions, IngestResult
from mmgraph.ingest.quarantine import Quarantine, Refusal
from mmgraph.ingest.readers import RawRecord, batched, check_file
from mmgraph.ingest.records import Item, Location, RecordError, Relation, parse_record
from mmgraph.ingest.scratch import Scratch
from mmgraph.ingest.timings import add_time
from mmgraph.ingest.validator import Validator

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
) -> IngestResult:
    """Ingest batch files (JSONL, CSV, Parquet) as one run; images resolve beside each file.

    Each file is read once and hashed as it is read; the run's ``:IngestRun`` gets ``inputs``
    (``"<path> sha256:<hex>"``) and ``sha256s`` (the hex digests) when it ends. ``run_props``:
    extra properties for the ``:IngestRun`` node (Neo4j property values); ``on_refusal``: called
    with each quarantined record as it is refused.
    """
    for path in paths:
        check_file(path)
    files = HashedFiles(paths)
    source = ",".join(str(path) for path in paths)
    return _run(
        store, files.records(), source, options, encoders, files.ledger, run_props, on_refusal
    )


def ingest(
    store: GraphStore,
    records: Iterable[RawRecord],
    source: str,
    options: IngestOptions,
    encoders: Encoders | None = None,
    inputs: Sequence[str] = (),
    run_props: Mapping[str, Any] | None = None,
    on_refusal: Callable[[Refusal], None] | None = None,
) -> IngestResult:
    """Validate, encode and write ``records`` as one audited run (see the module's guarantees).

    ``records`` is consumed once, as a stream. An image may come as bytes, a ``data:`` URI with
    base64 bytes, or a path (refused by a run with ``allow_image_paths=False``). ``encoders``:
    those of the caller (default: fp32 text, on torch's default device); ``on_refusal``: called
    with each quarantined record as it is refused.
    """

    def ledger() -> dict[str, Any]:
        return {"inputs": list(inputs)}

    return _run(store, records, source, options, encoders, ledger, run_props, on_refusal)


def _run(
    store: GraphStore,
    records: Iterable[RawRecord],
    source: str,
    options: IngestOptions,
    encoders: Encoders | None,
    ledger: Callable[[], dict[str, Any]],
    run_props: Mapping[str, Any] | None,
    on_refusal: Callable[[Refusal], None] | None,
) -> IngestResult:
    run_id = new_run_id()
    result = IngestResult(run_id)
    quarantine = Quarantine(options.quarantine_dir, run_id, on_refusal)
    started = time.perf_counter()
    store.setup_schema()
    props = {
        **(run_props or {}),
        **ledger(),
        "batch_size": options.batch_size,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    audit.start_run(store, run_id, source, **props)
    try:
        with Scratch() as scratch:
            _stream(store, records, options, encoders or Encoders(), quarantine, scratch, result)
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


def _finish(
    store: GraphStore,
    result: IngestResult,
    quarantine: Quarantine,
    started: float,
    ledger: dict[str, Any],
    failed: bool,
) -> None:
    result.quarantined = quarantine.count
    result.quarantine_file = quarantine.path if quarantine.count else None
    result.seconds = time.perf_counter() - started
    if failed or (quarantine.count and not (result.nodes_written or result.relationships_written)):
        result.status = "failed"
    else:
        result.status = "partial" if quarantine.count else "ok"
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


def _stream(
    store: GraphStore,
    records: Iterable[RawRecord],
    options: IngestOptions,
    encoders: Encoders,
    quarantine: Quarantine,
    scratch: Scratch,
    result: IngestResult,
) -> None:
    """Validate and write items ``batch_size`` at a time as they are read, holding relations in
    the scratch file; then finish first numeric fits and write the relations."""
    validator = Validator(scratch, store.vector_dimension)
    numbers = NumberEncoders(store, scratch)
    pending: list[tuple[Location, Item, Any]] = []
    t0 = time.perf_counter()
    for location, raw in records:
        try:
            if isinstance(raw, RecordError):
                raise raw
            record = parse_record(raw, location)
            if isinstance(record, Relation):
                scratch.hold_relation(location, record, raw)
                continue
            validator.check(record, location)
            pending.append((location, record, raw))
        except RecordError as error:
            quarantine.add(error, raw)
        if len(pending) >= options.batch_size:
            add_time(result.timings, "validate", t0)
            _write_items(store, pending, options, encoders, numbers, quarantine, scratch, result)
            pending = []
            t0 = time.perf_counter()
    add_time(result.timings, "validate", t0)
    if pending:
        _write_items(store, pending, options, encoders, numbers, quarantine, scratch, result)
    numbers.finish(options.batch_size, result.run_id or "", result.timings)
    _write_relations(store, scratch, options, quarantine, result)


def _write_items(
    store: GraphStore,
    batch: list[tuple[Location, Item, Any]],
    options: IngestOptions,
    encoders: Encoders,
    numbers: NumberEncoders,
    quarantine: Quarantine,
    scratch: Scratch,
    result: IngestResult,
) -> None:
    """Encode and write one batch of items (one transaction); note the uids written."""
    states = store.node_states(item.uid for _, item, _ in batch)
    good = []
    for location, item, raw in batch:
        state = states.get(item.uid)
        if state is not None and state.type != item.type:
            message = f"uid {item.uid!r} is stored as a {state.type}"
            quarantine.add(RecordError(location, "type", message), raw)
        else:
            good.append((location, item, raw))
    rows = encode_items(good, states, options, encoders, numbers, quarantine, result.timings)
    t0 = time.perf_counter()
    written = store.write_batch(rows, [], result.run_id or "")
    add_time(result.timings, "write_nodes", t0)
    result.nodes_written += written.nodes_written
    result.nodes_created += written.nodes_created
    scratch.mark_written(row.uid for row in rows)
    log.info("run %s: %d nodes written", result.run_id, result.nodes_written)


def _write_relations(
    store: GraphStore,
    scratch: Scratch,
    options: IngestOptions,
    quarantine: Quarantine,
    result: IngestResult,
) -> None:
    """Write the held relations in batches; refuse those naming an item this run refused."""
    refused = scratch.unwritten(quarantine.rejected)
    for batch in batched(scratch.relations(), options.batch_size):
        endpoints = {uid for _, rel, _ in batch for uid in (rel.src, rel.dst)}
        present = store.existing_types(endpoints)
        rows = []
        for location, rel, raw in batch:
            error = _endpoint_error(rel, location, present, refused)
            if error is not None:
                quarantine.add(error, raw)
                continue
            rows.append(rel)
        t0 = time.perf_counter()
        written = store.write_batch([], rows, result.run_id or "")
        add_time(result.timings, "write_relationships", t0)
        result.relationships_written += written.relationships_written
        result.relationships_created += written.relationships_created
        log.info("run %s: %d relationships written", result.run_id, result.relationships_written)


def _endpoint_error(
    rel: RelRow, location: Location, present: dict[str, str], refused: set[str]
) -> RecordError | None:
    for side in ("src", "dst"):
        uid = getattr(rel, side)
        if uid in refused:
            return RecordError(location, side, f"item {uid!r} was quarantined in this run")
        if uid not in present:
            return RecordError(location, side, f"no item {uid!r} in the graph or the input")
    return None
