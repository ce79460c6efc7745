"""Batch ingestion: validate every record, encode modalities, upsert in atomic batches, audit.

Guarantees:

- A record that fails validation (schema, a type clash with the stored graph or the same input, a
  vector dimension clash, an unreadable image, a relation endpoint that is neither stored nor an
  item of the input, or is an item this run refused) is written to the run's quarantine file with
  its location, field and reason; every good record is written.
- Validation holds the whole input in memory (records and their vectors) before writing; encoding
  and writing go batch by batch.
- Each write batch is one transaction: a batch that fails part-way leaves nothing of itself.
- Writes are ``MERGE`` on uid and on (start, type, end), so re-running an input changes no counts,
  and a run cut short (by a dead database, say) can simply be run again to completion.
- Each run leaves an ``:IngestRun`` node: source, input checksums, times, status and counts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
from neo4j.exceptions import ServiceUnavailable, SessionExpired

from mmgraph.graph.schema import encoder_property, vector_property
from mmgraph.graph.store import GraphStore, NodeRow, NodeState, RelRow
from mmgraph.ingest.encoders import (
    ImageDecodeError,
    ImageEncoder,
    NumericEncoder,
    PrecomputedEncoder,
    TextEncoder,
)
from mmgraph.ingest.readers import RawRecord, check_file, read_records
from mmgraph.ingest.records import Item, Location, RecordError, Relation, parse_record

log = logging.getLogger(__name__)

Status = Literal["ok", "partial", "failed"]


class IngestError(RuntimeError):
    """An ingest run that stopped before the end; ``result`` holds what it had written."""

    def __init__(self, message: str, result: IngestResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class IngestOptions:
    """How a run ingests: batch size, which encoders run, where quarantine files go."""

    quarantine_dir: Path
    batch_size: int = 2000
    encode_text: bool = True
    encode_images: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


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
    """The encoders a run may use, created on first need and kept for later runs."""

    text: TextEncoder | None = None
    image: ImageEncoder | None = None

    def text_encoder(self) -> TextEncoder:
        if self.text is None:
            self.text = TextEncoder()
        return self.text

    def image_encoder(self) -> ImageEncoder:
        if self.image is None:
            self.image = ImageEncoder()
        return self.image

    def text_tag(self) -> str:
        """The text encoder's tag (known without loading its model)."""
        return self.text_encoder().tag

    def image_tag(self) -> str:
        """The image encoder's tag (known without loading its model)."""
        return self.image_encoder().tag


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
            "raw": raw if not isinstance(raw, RecordError) else None,
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


@dataclass
class _Input:
    """The validated records of one run, in input order."""

    items: list[tuple[Location, Item, Any]] = field(default_factory=list)
    relations: list[tuple[Location, Relation, Any]] = field(default_factory=list)


def ingest_files(
    store: GraphStore,
    paths: Sequence[Path],
    options: IngestOptions,
    encoders: Encoders | None = None,
) -> IngestResult:
    """Ingest batch files (JSONL, CSV, Parquet) as one run; images resolve beside each file."""
    for path in paths:
        check_file(path)
    inputs = [f"{path} sha256:{_sha256(path)}" for path in paths]
    records = chain.from_iterable(read_records(path) for path in paths)
    source = ",".join(str(path) for path in paths)
    return ingest(store, records, source, options, encoders, inputs=inputs)


def ingest(
    store: GraphStore,
    records: Iterable[RawRecord],
    source: str,
    options: IngestOptions,
    encoders: Encoders | None = None,
    inputs: Sequence[str] = (),
) -> IngestResult:
    """Validate, encode and write ``records`` as one audited run (see the module's guarantees)."""
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    result = IngestResult(run_id)
    quarantine = _Quarantine(options.quarantine_dir, run_id)
    started = time.perf_counter()
    store.setup_schema()
    store.start_run(run_id, source, inputs=list(inputs), batch_size=options.batch_size)
    try:
        validated = _validate(records, quarantine, store.vector_dimension)
        result.timings["validate"] = time.perf_counter() - started
        written = _write_items(
            store, validated.items, options, encoders or Encoders(), quarantine, result
        )
        _write_relations(store, validated.relations, options, quarantine, written, result)
    except Exception as e:
        # Whatever stopped the run (a dead database, a value the driver cannot send, a bug),
        # the audit trail records it as failed; a rerun completes it.
        _finish(store, result, quarantine, started, failed=True)
        raise IngestError(f"ingest run {run_id} stopped: {e!r}", result) from e
    _finish(store, result, quarantine, started, failed=False)
    return result


def _finish(
    store: GraphStore,
    result: IngestResult,
    quarantine: _Quarantine,
    started: float,
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
        )
    except (ServiceUnavailable, SessionExpired) as e:
        # The database is gone: the run stays "running" in the audit trail, which is the truth.
        log.error("could not record the end of run %s: %s", result.run_id, e)


def _validate(
    records: Iterable[RawRecord],
    quarantine: _Quarantine,
    stored_dimension: Callable[[str, str], int | None],
) -> _Input:
    """Parse every record; quarantine bad ones and type clashes inside the input, and vectors
    whose dimension differs from the same type's stored vectors or earlier ones of the input."""
    validated = _Input()
    types: dict[str, tuple[str, Location]] = {}
    dims: dict[tuple[str, str], tuple[int, str]] = {}
    for location, raw in records:
        try:
            if isinstance(raw, RecordError):
                raise raw
            record = parse_record(raw, location)
            if isinstance(record, Relation):
                validated.relations.append((location, record, raw))
                continue
            seen = types.setdefault(record.uid, (record.type, location))
            if seen[0] != record.type:
                raise RecordError(
                    location, "type", f"uid {record.uid!r} is a {seen[0]} at {seen[1]}"
                )
            for name, vector in (record.vectors or {}).items():
                key = (record.type, name)
                if key not in dims:
                    stored = stored_dimension(*key)
                    dims[key] = (
                        (stored, f"the stored {record.type} vectors have")
                        if stored is not None
                        else (len(vector), f"record {location} has")
                    )
                dim, where = dims[key]
                if dim != len(vector):
                    message = f"has {len(vector)} dimensions; {where} {dim}"
                    raise RecordError(location, f"vectors.{name}", message)
            validated.items.append((location, record, raw))
        except RecordError as error:
            quarantine.add(error, raw)
    return validated


def _write_items(
    store: GraphStore,
    items: list[tuple[Location, Item, Any]],
    options: IngestOptions,
    encoders: Encoders,
    quarantine: _Quarantine,
    result: IngestResult,
) -> set[str]:
    """Write the items in batches; return the uids written."""
    written_uids: set[str] = set()
    numeric = _numeric_encoders(store, [item for _, item, _ in items])
    for batch in batched(items, options.batch_size):
        states = store.node_states(item.uid for _, item, _ in batch)
        good = []
        for location, item, raw in batch:
            state = states.get(item.uid)
            if state is not None and state.type != item.type:
                message = f"uid {item.uid!r} is stored as a {state.type}"
                quarantine.add(RecordError(location, "type", message), raw)
            else:
                good.append((location, item, raw))
        rows = _encode(good, states, options, encoders, numeric, quarantine, result.timings)
        t0 = time.perf_counter()
        written = store.write_batch(rows, [], result.run_id)
        _add_time(result.timings, "write_nodes", t0)
        result.nodes_written += written.nodes_written
        result.nodes_created += written.nodes_created
        written_uids.update(row.uid for row in rows)
        log.info("run %s: %d nodes written", result.run_id, result.nodes_written)
    return written_uids


def _write_relations(
    store: GraphStore,
    relations: list[tuple[Location, Relation, Any]],
    options: IngestOptions,
    quarantine: _Quarantine,
    written_uids: set[str],
    result: IngestResult,
) -> None:
    """Write the relations in batches; refuse those naming an item this run refused."""
    refused = quarantine.rejected - written_uids
    for batch in batched(relations, options.batch_size):
        endpoints = {uid for _, rel, _ in batch for uid in (rel.src, rel.dst)}
        present = store.existing_types(endpoints)
        rows = []
        for location, rel, raw in batch:
            error = _endpoint_error(rel, location, present, refused)
            if error is not None:
                quarantine.add(error, raw)
                continue
            rows.append(RelRow(rel.src, rel.dst, rel.type, rel.weight, dict(rel.props)))
        t0 = time.perf_counter()
        written = store.write_batch([], rows, result.run_id)
        _add_time(result.timings, "write_relationships", t0)
        result.relationships_written += written.relationships_written
        result.relationships_created += written.relationships_created
        log.info("run %s: %d relationships written", result.run_id, result.relationships_written)


def _endpoint_error(
    rel: Relation, location: Location, present: dict[str, str], refused: set[str]
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
    numeric: dict[str, NumericEncoder],
    quarantine: _Quarantine,
    timings: dict[str, float],
) -> list[NodeRow]:
    """Turn a batch of items into node rows with their modality vectors.

    Text and images whose stored vector came from the same input and encoder are not encoded
    again, so re-running an input costs writes, not model time.
    """
    t0 = time.perf_counter()
    kept: list[Item] = []
    images: dict[int, np.ndarray] = {}
    props: list[dict[str, Any]] = []
    for location, item, raw in batch:
        row_props: dict[str, Any] = dict(item.props)
        if item.text is not None:
            row_props["text"] = item.text
        if item.image is not None:
            try:
                data, path = _load_image(item.image, location)
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
                    images[len(kept)] = encoders.image_encoder().decode(data)
                except ImageDecodeError as e:
                    quarantine.add(RecordError(location, "image", str(e)), raw)
                    continue
        kept.append(item)
        props.append(row_props)
    _add_time(timings, "prepare", t0)

    vectors: list[dict[str, tuple[np.ndarray, str]]] = [{} for _ in kept]
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
    if options.encode_images:
        _encode_into(vectors, "image", images, encoders.image_encoder, timings)
    for type_name, encoder in numeric.items():
        known = set(encoder.columns)
        rows = {
            i: it.numbers
            for i, it in enumerate(kept)
            if it.type == type_name and it.numbers and known.intersection(it.numbers)
        }
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


def _numeric_encoders(store: GraphStore, items: list[Item]) -> dict[str, NumericEncoder]:
    """One standardiser per node type: the one kept with the graph, else fitted on this input.

    Keeping the first fit makes every later run's ``num`` vectors share its tag, so one type's
    numbers are never split between encoders; names it was not fitted on are ignored (logged).
    """
    by_type: dict[str, list[dict[str, float]]] = {}
    for item in items:
        if item.numbers:
            by_type.setdefault(item.type, []).append(item.numbers)
    encoders = {}
    for type_name, rows in by_type.items():
        key = f"num:{type_name}"
        stored = store.get_state(key)
        if stored is None:
            fitted = json.dumps(NumericEncoder().fit(rows).to_dict())
            stored = store.put_state_once(key, fitted)
        encoder = NumericEncoder.from_dict(json.loads(stored))
        unknown = {name for row in rows for name in row} - set(encoder.columns)
        if unknown:
            log.warning(
                "%s numbers %s are not in its stored standardisation %s: ignored",
                type_name,
                sorted(unknown),
                encoder.tag,
            )
        encoders[type_name] = encoder
    return encoders


def _load_image(ref: str, location: Location) -> tuple[bytes, str | None]:
    """The bytes of an item's image and, for a file, its resolved path."""
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_time(timings: dict[str, float], key: str, since: float) -> None:
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - since
