"""Readers of batch files (JSONL, CSV, Parquet) into raw records with their locations.

A reader never stops at a bad record: a line that is not JSON, or a CSV cell that should hold JSON
and does not, comes out as a :class:`RecordError` in the record's place, to be quarantined. Bytes
that are not UTF-8 are kept as lone surrogates, which validation then refuses for that record's
field; a leading byte-order mark is dropped.

Given a :mod:`hashlib` object, a reader feeds it the file's bytes as it reads them (JSONL, CSV), so
a file is hashed and parsed in one read; Parquet, whose footer is read first, is hashed in one
sequential pass before its rows are read. An ingest run reads JSONL lines as :class:`JsonText`,
parsed as they are validated (a line that is not JSON is then refused by validation, with the
same error).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow.parquet as pq

from mmgraph.core.errors import InvalidArgumentError, NotFoundError
from mmgraph.ingest.records import JsonText, Location, RecordError, json_value

# Columns that carry JSON text in CSV and (optionally) in Parquet.
JSON_COLUMNS = ("vectors", "props", "numbers")
NUMBER_COLUMNS = ("weight",)
ENCODING = "utf-8-sig"
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}

RawRecord = tuple[Location, dict[str, Any] | JsonText | RecordError]
BLOCK = 1 << 20


class Digest(Protocol):
    """What a reader needs of a :mod:`hashlib` object."""

    def update(self, data: bytes | memoryview, /) -> None: ...


class UnsupportedFileError(InvalidArgumentError):
    """A batch file whose format mmgraph cannot read."""


class InputFileNotFoundError(NotFoundError):
    """A batch file that does not exist (or is not a file)."""


def check_file(path: Path) -> str:
    """The format of a batch file (``jsonl``, ``csv``, ``parquet``); raise if it can't be read."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedFileError(
            f"{path}: unsupported file type {path.suffix!r}; expected one of {sorted(SUFFIXES)}"
        )
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: no such file")
    return fmt


def read_records(
    path: Path, digest: Digest | None = None, json_text: bool = False
) -> Iterator[RawRecord]:
    """Yield every record of a batch file with its location, in file order.

    ``digest`` (e.g. ``hashlib.sha256()``), when given, is fed every byte of the file; it holds
    the whole file's hash once the iterator is exhausted. ``json_text``: JSONL lines come as
    :class:`JsonText`, not parsed here.
    """
    fmt = check_file(path)
    if fmt == "parquet":
        if digest is not None:
            _hash_into(path, digest)
        yield from _read_parquet(path)
        return
    with path.open("rb") as raw:
        binary: BinaryIO = raw
        if digest is not None:
            binary = io.BufferedReader(_HashingReader(raw, digest), buffer_size=BLOCK)
        if fmt == "csv":
            yield from _read_csv(binary, str(path))
        elif json_text:
            yield from _read_jsonl_text(binary, str(path))
        else:
            yield from _read_jsonl(binary, str(path))


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in one sequential pass."""
    digest = hashlib.sha256()
    _hash_into(path, digest)
    return digest.hexdigest()


def _hash_into(path: Path, digest: Digest) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)


class _HashingReader(io.RawIOBase):
    """A read-only binary stream that feeds every byte read from ``raw`` into ``digest``."""

    def __init__(self, raw: BinaryIO, digest: Digest) -> None:
        self._raw = raw
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n


def _text(binary: BinaryIO, newline: str | None) -> io.TextIOWrapper:
    return io.TextIOWrapper(binary, encoding=ENCODING, errors="surrogateescape", newline=newline)


def _read_jsonl_text(binary: BinaryIO, source: str) -> Iterator[RawRecord]:
    with _text(binary, None) as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield Location(source, number), JsonText(line)


def _read_jsonl(binary: BinaryIO, source: str) -> Iterator[RawRecord]:
    for location, line in _read_jsonl_text(binary, source):
        try:
            yield location, json_value(line, location)
        except RecordError as e:
            yield location, e


def _read_csv(binary: BinaryIO, source: str) -> Iterator[RawRecord]:
    with _text(binary, "") as handle:
        # Record numbers count data rows: the header is row 0.
        for number, row in enumerate(csv.DictReader(handle), start=1):
            yield _from_columns(row, Location(source, number))


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    number = 0
    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                number += 1
                yield _from_columns(row, Location(str(path), number))


def _from_columns(row: dict[str, Any], location: Location) -> RawRecord:
    """Turn a flat row into a raw record: empty cells dropped, JSON columns parsed."""
    record: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or value == "":
            continue
        if key in JSON_COLUMNS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                return location, RecordError(location, key, f"not valid JSON: {e.msg}")
        elif key in NUMBER_COLUMNS and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return location, RecordError(location, key, f"not a number: {value!r}")
        record[key] = value
    return location, record


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
