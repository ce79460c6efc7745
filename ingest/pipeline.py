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
- Each run leaves an ``:IngestRun`` node: source, inputs with their SHA-256 (computed while each
  file is read), pid and host, times in UTC, status and counts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import os
import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
from neo4j.exceptions import ServiceUnavailable, SessionExpired

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError, MmgraphError
from mmgraph.graph.schema import encoder_property, vector_property
from mmgraph.graph.store import GraphStore, NodeRow, NodeState, RelRow
from mmgraph.ingest.encoders import (
    Encoder,
    ImageDecodeError,
    ImageEncoder,
    NumericEncoder,
    PrecomputedEncoder,
    make_text_encoder,
)
from mmgraph.ingest.encoders.image import DEFAULT_MAX_PIXELS
from mmgraph.ingest.readers import RawRecord, check_file, read_records
from mmgraph.ingest.records import Item, Location, RecordError, Relation, parse_record

log = logging.getLogger(__name__)

Status = Literal["ok", "partial", "failed"]
# Images decoded before they are encoded: bounds the memory of decoded pixels (150 KB each).
IMAGE_CHUNK = 64
# A data: URI longer than this is shortened in quarantine files.
QUARANTINE_URI_CHARS = 256
REMOTE_PATH_REFUSED = "image paths are not accepted from remote callers; send the bytes"


class IngestError(MmgraphError):
    """An ingest run that stopped before the end; ``result`` holds what it had written."""

    def __init__(self, message: str, result: IngestResult) -> None:
        super().__init__(message)
        self.result = result


class IngestOptionsError(InvalidArgumentError):
    """An :class:`IngestOptions` value out of range."""


@dataclass(frozen=True)
class IngestOptions:
    """How a run ingests.

    Args:
        quarantine_dir: where ``<run_id>.jsonl`` quarantine files go.
        batch_size: items per chunk read, validated, encoded and written (one transaction each).
        encode_text: run the text encoder.
        encode_images: run the image encoder.
        allow_image_paths: let an item's ``image`` name a file on this machine. ``False`` for
            remote callers: their images come as ``data:<type>;base64,<bytes>`` URIs, and a path is
            quarantined without being opened.
        max_image_pixels: a picture whose header declares more pixels is quarantined before it is
            decoded (when images are encoded).
    """

    quarantine_dir: Path
    batch_size: int = 2000
    encode_text: bool = True
    encode_images: bool = True
    allow_image_paths: bool = True
    max_image_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise IngestOptionsError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_image_pixels < 1:
            raise IngestOptionsError(
                f"max_image_pixels must be at least 1, got {self.max_image_pixels}"
            )


@dataclass
class IngestResult:
    """What a run did; :meth:`to_json` is the fixed shape of ``mmgraph ingest --json``."""

    run_id: str | None
    status: Status = "ok"
    nodes_written: int = 0
    relationships_written: int = 0
    quarantined: int = 0
    quarantine_file: Path | None = None
    nodes_created: int = 0
    relationships_created: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "nodes_written": self.nodes_written,
            "relationships_written": self.relationships_written,
            "quarantined": self.quarantined,
            "quarantine_file": str(self.quarantine_file) if self.quarantine_file else None,
        }

    def counts(self) -> dict[str, int]:
        return {
            "nodes_written": self.nodes_written,
            "nodes_created": self.nodes_created,
            "relationships_written": self.relationships_written,
            "relationships_created": self.relationships_created,
            "quarantined": self.quarantined,
        }


@dataclass
class Encoders:
    """The encoders a run may use, created on first need and kept for later runs, both on the
    settings' device (``MMGRAPH_DEVICE``); the text encoder is the settings' choice
    (``MMGRAPH_TEXT_ENCODER``: fp32 or int8)."""

    text: Encoder | None = None
    image: ImageEncoder | None = None

    def text_encoder(self) -> Encoder:
        if self.text is None:
            settings = Settings.from_env()
            self.text = make_text_encoder(settings.text_encoder, settings.device)
        return self.text

    def image_encoder(self) -> ImageEncoder:
        if self.image is None:
            self.image = ImageEncoder(device=Settings.from_env().device)
        return self.image

    def text_tag(self) -> str:
        """The text encoder's tag (known without loading its model)."""
        return self.text_encoder().tag

    def image_tag(self) -> str:
        """The image encoder's tag (known without loading its model)."""
        return self.image_encoder().tag


def new_run_id(now: datetime | None = None) -> str:
    """A run id: the UTC start time and a random suffix, e.g. ``20261125T101500Z-1a2b3c4d``."""
    return f"{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"


class _Quarantine:
    """Bad records of one run, appended to ``<dir>/<run_id>.jsonl`` as they are found."""

    def __init__(self, directory: Path, run_id: str) -> None:
        self.path = directory / f"{run_id}.jsonl"
        self.run_id = run_id
        self.count = 0
        # uids of items refused in this run: relations naming them are refused too.
        self.rejected: set[str] = set()

    def add(self, error: RecordError, raw: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "run_id": self.run_id,
            "source": error.location.source,
            "record": error.location.number,
            "field": error.field,
            "message": error.message,
            "raw": _shorten(raw) if not isinstance(raw, RecordError) else None,
        }
        try:
            line = json.dumps(entry, default=repr, allow_nan=False)
        except ValueError:  # NaN or infinity somewhere in the raw record
            line = json.dumps({**entry, "raw": repr(entry["raw"])})
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
        if isinstance(raw, dict) and isinstance(raw.get("uid"), str):
            self.rejected.add(raw["uid"])
        self.count += 1
        log.warning("quarantined %s", error)


def _shorten(raw: Any) -> Any:
    """``raw`` with a long ``data:`` image URI cut, so a refused picture does not bloat the file."""
    image = raw.get("image") if isinstance(raw, dict) else None
    if isinstance(image, str) and image.startswith("data:") and len(image) > QUARANTINE_URI_CHARS:
        cut = image[:QUARANTINE_URI_CHARS]
        return {**raw, "image": f"{cut}... ({len(image) - len(cut)} more characters)"}
    return raw


class _Scratch:
    """What a run remembers of its whole input, kept in a temporary SQLite file, not in memory.

    Holds each item uid's type and first location, whether it was written, the relations (written
    after every item), and numbers waiting for their type's first standardisation fit.
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mmgraph-ingest-")
        self.db = sqlite3.connect(Path(self._dir.name) / "run.sqlite", isolation_level=None)
        self.db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -16384;
            CREATE TABLE items (uid TEXT PRIMARY KEY, type TEXT NOT NULL, source INTEGER NOT NULL,
                                number INTEGER NOT NULL, written INTEGER NOT NULL DEFAULT 0)
                WITHOUT ROWID;
            CREATE TABLE relations (src TEXT, dst TEXT, type TEXT, weight REAL, props TEXT,
                                    source INTEGER, number INTEGER, raw TEXT);
            CREATE TABLE numbers (type TEXT, uid TEXT, numbers TEXT);
            """
        )
        # One transaction for the whole run: the file is thrown away, never committed to.
        self.db.execute("BEGIN")
        self._sources: list[str] = []
        self._source_ids: dict[str, int] = {}

    def __enter__(self) -> _Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()
        self._dir.cleanup()

    def _source(self, location: Location) -> int:
        # File names are kept once, in memory (a path may hold bytes SQLite cannot store).
        if location.source not in self._source_ids:
            self._source_ids[location.source] = len(self._sources)
            self._sources.append(location.source)
        return self._source_ids[location.source]

    def claim(self, uid: str, type_name: str, location: Location) -> tuple[str, Location] | None:
        """Remember that ``uid`` is a ``type_name`` first seen at ``location``; if it was seen
        before, return the type and location it was first seen with instead."""
        row = self.db.execute(
            "SELECT type, source, number FROM items WHERE uid = ?", (uid,)
        ).fetchone()
        if row is not None:
            return row[0], Location(self._sources[row[1]], row[2])
        self.db.execute(
            "INSERT INTO items (uid, type, source, number) VALUES (?, ?, ?, ?)",
            (uid, type_name, self._source(location), location.number),
        )
        return None

    def mark_written(self, uids: Iterable[str]) -> None:
        self.db.executemany("UPDATE items SET written = 1 WHERE uid = ?", ((u,) for u in uids))

    def unwritten(self, uids: Iterable[str]) -> set[str]:
        """The uids among ``uids`` that this run did not write."""
        query = "SELECT 1 FROM items WHERE uid = ? AND written = 1"
        return {uid for uid in uids if self.db.execute(query, (uid,)).fetchone() is None}

    def hold_relation(self, location: Location, relation: Relation, raw: Any) -> None:
        self.db.execute(
            "INSERT INTO relations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                relation.src,
                relation.dst,
                relation.type,
                relation.weight,
                json.dumps(relation.props),
                self._source(location),
                location.number,
                json.dumps(raw, default=repr),
            ),
        )

    def relations(self) -> Iterator[tuple[Location, RelRow, Any]]:
        """The held relations in input order."""
        rows = self.db.execute("SELECT * FROM relations ORDER BY rowid")
        for src, dst, type_name, weight, props, source, number, raw in rows:
            location = Location(self._sources[source], number)
            yield location, RelRow(src, dst, type_name, weight, json.loads(props)), json.loads(raw)

    def hold_numbers(self, item: Item) -> None:
        self.db.execute(
            "INSERT INTO numbers VALUES (?, ?, ?)",
            (item.type, item.uid, json.dumps(item.numbers)),
        )

    def numbers(self, type_name: str) -> Iterator[tuple[str, dict[str, float]]]:
        """The held ``(uid, numbers)`` of ``type_name`` items, in input order."""
        rows = self.db.execute(
            "SELECT uid, numbers FROM numbers WHERE type = ? ORDER BY rowid", (type_name,)
        )
        for uid, numbers in rows:
            yield uid, json.loads(numbers)


class _RunningFit:
    """Column means and population standard deviations of rows of numbers seen one at a time
    (Welford's method): the state :meth:`NumericEncoder.fit` would give on all rows at once."""

    def __init__(self) -> None:
        self.columns: dict[str, list[float]] = {}  # name -> [count, mean, sum of squares]

    def add(self, numbers: Mapping[str, float]) -> None:
        for name, value in numbers.items():
            stats = self.columns.setdefault(name, [0, 0.0, 0.0])
            stats[0] += 1
            delta = value - stats[1]
            stats[1] += delta / stats[0]
            stats[2] += delta * (value - stats[1])

    def state(self) -> dict[str, Any]:
        names = sorted(self.columns)
        std = [math.sqrt(self.columns[n][2] / self.columns[n][0]) for n in names]
        return {
            "columns": names,
            "mean": [self.columns[n][1] for n in names],
            "std": [s if s > 0 else 1.0 for s in std],
        }


class _Numbers:
    """A run's ``num`` encoders, one per node type: the standardisation kept with the graph, or,
    on the first run that brings numbers of a type, one fitted on all of this run's numbers of it.

    Keeping the first fit makes every later run's ``num`` vectors share its tag, so one type's
    numbers are never split between encoders; names it was not fitted on are ignored (logged).
    Items of a type without a kept fit are written without ``num_vec`` and get it at the end of
    the run, once the fit (on all of them) is kept; their numbers wait in the scratch file.
    """

    def __init__(self, store: GraphStore, scratch: _Scratch) -> None:
        self.store = store
        self.scratch = scratch
        self.kept: dict[str, NumericEncoder | None] = {}
        self.fits: dict[str, _RunningFit] = {}
        self.unknown: dict[str, set[str]] = {}

    def encoder(self, type_name: str) -> NumericEncoder | None:
        """The type's kept standardisation, or ``None`` when this run is the first to fit one."""
        if type_name not in self.kept:
            stored = self.store.get_state(f"num:{type_name}")
            self.kept[type_name] = (
                None if stored is None else NumericEncoder.from_dict(json.loads(stored))
            )
        return self.kept[type_name]

    def rows(self, items: Sequence[Item]) -> dict[str, dict[int, dict[str, float]]]:
        """The rows to encode now, by type; numbers of types without a kept fit are held."""
        by_type: dict[str, dict[int, dict[str, float]]] = {}
        for i, item in enumerate(items):
            if not item.numbers:
                continue
            encoder = self.encoder(item.type)
            if encoder is None:
                self.fits.setdefault(item.type, _RunningFit()).add(item.numbers)
                self.scratch.hold_numbers(item)
                continue
            known = set(encoder.columns)
            self.unknown.setdefault(item.type, set()).update(set(item.numbers) - known)
            if known.intersection(item.numbers):
                by_type.setdefault(item.type, {})[i] = item.numbers
        return by_type

    def finish(self, batch_size: int, run_id: str, timings: dict[str, float]) -> None:
        """Keep each first fit and write the ``num`` vectors of the items that waited for it."""
        for type_name, fit in self.fits.items():
            kept = self.store.put_state_once(f"num:{type_name}", json.dumps(fit.state()))
            encoder = NumericEncoder.from_dict(json.loads(kept))
            known = set(encoder.columns)
            rows = (
                (uid, numbers)
                for uid, numbers in self.scratch.numbers(type_name)
                if known.intersection(numbers)
            )
            for batch in batched(rows, batch_size):
                t0 = time.perf_counter()
                vectors = encoder.encode([numbers for _, numbers in batch])
                _add_time(timings, "encode_num", t0)
                nodes = [
                    NodeRow(uid, type_name, {}, {"num": (vector, encoder.tag)})
                    for (uid, _), vector in zip(batch, vectors, strict=True)
                ]
                t0 = time.perf_counter()
                self.store.write_batch(nodes, [], run_id)
                _add_time(timings, "write_nodes", t0)
        for type_name, names in self.unknown.items():
            encoder = self.kept[type_name]
            if names and encoder is not None:
                log.warning(
                    "%s numbers %s are not in its stored standardisation %s: ignored",
                    type_name,
                    sorted(names),
                    encoder.tag,
                )


class _Validator:
    """Checks an item against the rest of the input: one type per uid, and one dimension per
    (type, vector name), that of the stored vectors if any, else of the first in the input."""

    def __init__(
        self, scratch: _Scratch, stored_dimension: Callable[[str, str], int | None]
    ) -> None:
        self.scratch = scratch
        self.stored_dimension = stored_dimension
        self.dims: dict[tuple[str, str], tuple[int, str]] = {}

    def check(self, item: Item, location: Location) -> None:
        seen = self.scratch.claim(item.uid, item.type, location)
        if seen is not None and seen[0] != item.type:
            raise RecordError(location, "type", f"uid {item.uid!r} is a {seen[0]} at {seen[1]}")
        for name, vector in (item.vectors or {}).items():
            key = (item.type, name)
            if key not in self.dims:
                stored = self.stored_dimension(*key)
                self.dims[key] = (
                    (stored, f"the stored {item.type} vectors have")
                    if stored is not None
                    else (len(vector), f"record {location} has")
                )
            dim, where = self.dims[key]
            if dim != len(vector):
                message = f"has {len(vector)} dimensions; {where} {dim}"
                raise RecordError(location, f"vectors.{name}", message)


class _HashedFiles:
    """Batch files read one after another, each hashed (SHA-256) as it is read."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.sha256: list[str | None] = [None] * len(self.paths)

    def records(self) -> Iterator[RawRecord]:
        for i, path in enumerate(self.paths):
            digest = hashlib.sha256()
            yield from read_records(path, digest)
            self.sha256[i] = digest.hexdigest()

    def ledger(self) -> dict[str, Any]:
        """``inputs`` (``"<path> sha256:<hex>"``) and ``sha256s``; a file not read to its end
        (the run stopped) is listed by path alone."""
        return {
            "inputs": [
                f"{path} sha256:{sha}" if sha else str(path)
                for path, sha in zip(self.paths, self.sha256, strict=True)
            ],
            "sha256s": [sha for sha in self.sha256 if sha],
        }


def ingest_files(
    store: GraphStore,
    paths: Sequence[Path],
    options: IngestOptions,
    encoders: Encoders | None = None,
    run_props: Mapping[str, Any] | None = None,
) -> IngestResult:
    """Ingest batch files (JSONL, CSV, Parquet) as one run; images resolve beside each file.

    Each file is read once and hashed as it is read; the run's ``:IngestRun`` gets ``inputs``
    (``"<path> sha256:<hex>"``) and ``sha256s`` (the hex digests) when it ends. ``run_props``:
    extra properties for the ``:IngestRun`` node (Neo4j property values).
    """
    for path in paths:
        check_file(path)
    files = _HashedFiles(paths)
    source = ",".join(str(path) for path in paths)
    return _run(store, files.records(), source, options, encoders, files.ledger, run_props)


def ingest(
    store: GraphStore,
    records: Iterable[RawRecord],
    source: str,
    options: IngestOptions,
    encoders: Encoders | None = None,
    inputs: Sequence[str] = (),
    run_props: Mapping[str, Any] | None = None,
) -> IngestResult:
    """Validate, encode and write ``records`` as one audited run (see the module's guarantees).

    ``records`` is consumed once, as a stream. An image may come as a ``data:`` URI with base64
    bytes (the only form a run with ``allow_image_paths=False`` accepts) or a path.
    """

    def ledger() -> dict[str, Any]:
        return {"inputs": list(inputs)}

    return _run(store, records, source, options, encoders, ledger, run_props)


def _run(
    store: GraphStore,
    records: Iterable[RawRecord],
    source: str,
    options: IngestOptions,
    encoders: Encoders | None,
    ledger: Callable[[], dict[str, Any]],
    run_props: Mapping[str, Any] | None,
) -> IngestResult:
    run_id = new_run_id()
    result = IngestResult(run_id)
    quarantine = _Quarantine(options.quarantine_dir, run_id)
    started = time.perf_counter()
    store.setup_schema()
    props = {
        **(run_props or {}),
        **ledger(),
        "batch_size": options.batch_size,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    store.start_run(run_id, source, **props)
    try:
        with _Scratch() as scratch:
            _stream(store, records, options, encoders or Encoders(), quarantine, scratch, result)
    except Exception as e:
        # Whatever stopped the run (a dead database, a value the driver cannot send, a bug),
        # the audit trail records it as failed; a rerun completes it.
        _finish(store, result, quarantine, started, ledger(), failed=True)
        raise IngestError(f"ingest run {run_id} stopped: {e!r}", result) from e
    _finish(store, result, quarantine, started, ledger(), failed=False)
    return result


def _finish(
    store: GraphStore,
    result: IngestResult,
    quarantine: _Quarantine,
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
        store.finish_run(
            result.run_id,
            result.status,
            result.counts(),
            quarantine_file=str(result.quarantine_file) if result.quarantine_file else None,
            **ledger,
        )
    except (ServiceUnavailable, SessionExpired) as e:
        # The database is gone: the run stays "running" in the audit trail, which is the truth.
        log.error("could not record the end of run %s: %s", result.run_id, e)


def _stream(
    store: GraphStore,
    records: Iterable[RawRecord],
    options: IngestOptions,
    encoders: Encoders,
    quarantine: _Quarantine,
    scratch: _Scratch,
    result: IngestResult,
) -> None:
    """Validate and write items ``batch_size`` at a time as they are read, holding relations in
    the scratch file; then finish first numeric fits and write the relations."""
    validator = _Validator(scratch, store.vector_dimension)
    numbers = _Numbers(store, scratch)
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
            _add_time(result.timings, "validate", t0)
            _write_items(store, pending, options, encoders, numbers, quarantine, scratch, result)
            pending = []
            t0 = time.perf_counter()
    _add_time(result.timings, "validate", t0)
    if pending:
        _write_items(store, pending, options, encoders, numbers, quarantine, scratch, result)
    numbers.finish(options.batch_size, result.run_id or "", result.timings)
    _write_relations(store, scratch, options, quarantine, result)


def _write_items(
    store: GraphStore,
    batch: list[tuple[Location, Item, Any]],
    options: IngestOptions,
    encoders: Encoders,
    numbers: _Numbers,
    quarantine: _Quarantine,
    scratch: _Scratch,
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
    rows = _encode(good, states, options, encoders, numbers, quarantine, result.timings)
    t0 = time.perf_counter()
    written = store.write_batch(rows, [], result.run_id or "")
    _add_time(result.timings, "write_nodes", t0)
    result.nodes_written += written.nodes_written
    result.nodes_created += written.nodes_created
    scratch.mark_written(row.uid for row in rows)
    log.info("run %s: %d nodes written", result.run_id, result.nodes_written)


def _write_relations(
    store: GraphStore,
    scratch: _Scratch,
    options: IngestOptions,
    quarantine: _Quarantine,
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
        _add_time(result.timings, "write_relationships", t0)
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


def _encode(
    batch: list[tuple[Location, Item, Any]],
    states: dict[str, NodeState],
    options: IngestOptions,
    encoders: Encoders,
    numbers: _Numbers,
    quarantine: _Quarantine,
    timings: dict[str, float],
) -> list[NodeRow]:
    """Turn a batch of items into node rows with their modality vectors.

    Text and images whose stored vector came from the same input and encoder are not encoded
    again, so re-running an input costs writes, not model time. Images are decoded (after their
    header's pixel count is checked) and encoded ``IMAGE_CHUNK`` at a time.
    """
    t0 = time.perf_counter()
    kept: list[Item] = []
    props: list[dict[str, Any]] = []
    pixels: list[tuple[int, np.ndarray]] = []
    image_vectors: dict[int, tuple[np.ndarray, str]] = {}
    encoding = 0.0

    def encode_pixels() -> float:
        started = time.perf_counter()
        encoder = encoders.image_encoder()
        out = encoder.encode([array for _, array in pixels])
        image_vectors.update(
            (row, (vector, encoder.tag)) for (row, _), vector in zip(pixels, out, strict=True)
        )
        pixels.clear()
        return time.perf_counter() - started

    for location, item, raw in batch:
        row_props: dict[str, Any] = dict(item.props)
        if item.text is not None:
            row_props["text"] = item.text
        if item.image is not None:
            try:
                data, path = _load_image(item.image, location, options.allow_image_paths)
            except RecordError as error:
                quarantine.add(error, raw)
                continue
            row_props["image_ref"] = f"sha256:{hashlib.sha256(data).hexdigest()}"
            if path is not None:
                row_props["image_path"] = path
            if options.encode_images and not _unchanged(
                states.get(item.uid), "image", encoders.image_tag(), row_props["image_ref"]
            ):
                try:
                    array = encoders.image_encoder().decode(data, options.max_image_pixels)
                except ImageDecodeError as e:
                    quarantine.add(RecordError(location, "image", str(e)), raw)
                    continue
                pixels.append((len(kept), array))
                if len(pixels) >= IMAGE_CHUNK:
                    encoding += encode_pixels()
        kept.append(item)
        props.append(row_props)
    if pixels:
        encoding += encode_pixels()
    timings["prepare"] = timings.get("prepare", 0.0) + time.perf_counter() - t0 - encoding
    if encoding:
        timings["encode_image"] = timings.get("encode_image", 0.0) + encoding

    vectors: list[dict[str, tuple[np.ndarray, str]]] = [{} for _ in kept]
    for row, vector in image_vectors.items():
        vectors[row]["image"] = vector
    given: dict[tuple[str, str], dict[int, list[float]]] = {}
    for i, item in enumerate(kept):
        for name, values in (item.vectors or {}).items():
            given.setdefault((item.type, name), {})[i] = values
    for (_, name), rows in given.items():
        _encode_into(vectors, name, rows, lambda name=name: PrecomputedEncoder(name), timings)
    if options.encode_text:
        texts = {
            i: item.text
            for i, item in enumerate(kept)
            if item.text
            and not _unchanged(states.get(item.uid), "text", encoders.text_tag(), item.text)
        }
        _encode_into(vectors, "text", texts, encoders.text_encoder, timings)
    for type_name, rows in numbers.rows(kept).items():
        encoder = numbers.kept[type_name]
        _encode_into(vectors, "num", rows, lambda enc=encoder: enc, timings)
    for item, row_props, row_vectors in zip(kept, props, vectors, strict=True):
        _drop_stale(states.get(item.uid), row_props, row_vectors)
    return [
        NodeRow(item.uid, item.type, row_props, row_vectors)
        for item, row_props, row_vectors in zip(kept, props, vectors, strict=True)
    ]


def _drop_stale(state: NodeState | None, props: dict[str, Any], vectors: dict[str, Any]) -> None:
    """Remove a stored text or image vector whose input changed but was not encoded again."""
    if state is None:
        return
    for modality, key in (("text", "text"), ("image", "image_ref")):
        tag = state.encoders.get(modality)
        source = props.get(key)
        stale = tag and source is not None and modality not in vectors
        if stale and not _unchanged(state, modality, tag, source):
            props[vector_property(modality)] = None
            props[encoder_property(modality)] = None


def _unchanged(state: NodeState | None, modality: str, tag: str, source: str) -> bool:
    """Whether the stored vector of ``modality`` was made by ``tag`` from this same input."""
    if state is None or state.encoders.get(modality) != tag:
        return False
    stored = state.text if modality == "text" else state.image_ref
    return stored == source


def _encode_into(
    vectors: list[dict[str, tuple[np.ndarray, str]]],
    modality: str,
    inputs: dict[int, Any],
    encoder: Callable[[], Any],
    timings: dict[str, float],
) -> None:
    if not inputs:
        return
    t0 = time.perf_counter()
    enc = encoder()
    out = enc.encode(list(inputs.values()))
    for row, vector in zip(inputs, out, strict=True):
        vectors[row][modality] = (vector, enc.tag)
    _add_time(timings, f"encode_{modality}", t0)


def _load_image(ref: str, location: Location, allow_paths: bool) -> tuple[bytes, str | None]:
    """The bytes of an item's image and, for a file, its resolved path; a path is refused
    unopened when ``allow_paths`` is false."""
    if ref.startswith("data:"):
        header, comma, payload = ref.partition(",")
        if not comma or not header.endswith(";base64"):
            raise RecordError(location, "image", "a data URI must be data:<type>;base64,<data>")
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as e:
            raise RecordError(location, "image", f"bad base64 data URI: {e}") from e
        if not data:
            raise RecordError(location, "image", "the data URI holds no bytes")
        return data, None
    if not allow_paths:
        raise RecordError(location, "image", REMOTE_PATH_REFUSED)
    path = Path(ref)
    if not path.is_absolute():
        path = Path(location.source).parent / path
    try:
        return path.read_bytes(), str(path.resolve())
    except OSError as e:
        raise RecordError(location, "image", f"cannot read {path}: {e.strerror}") from e


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _add_time(timings: dict[str, float], key: str, since: float) -> None:
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - since
