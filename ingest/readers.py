"""Readers of batch files (JSONL, CSV, Parquet) into raw records with their locations.

A reader never stops at a bad record: a line that is not JSON, or a CSV cell that should hold JSON
and does not, comes out as a :class:`RecordError` in the record's place, to be quarantined. Bytes
that are not UTF-8 are kept as lone surrogates, which validation then refuses for that record's
field; a leading byte-order mark is dropped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mmgraph.ingest.records import Location, RecordError

# Columns that carry JSON text in CSV and (optionally) in Parquet.
JSON_COLUMNS = ("vectors", "props", "numbers")
NUMBER_COLUMNS = ("weight",)
ENCODING = "utf-8-sig"
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}

RawRecord = tuple[Location, dict[str, Any] | RecordError]


class UnsupportedFileError(ValueError):
    """A batch file whose format mmgraph cannot read."""


def check_file(path: Path) -> str:
    """The format of a batch file (``jsonl``, ``csv``, ``parquet``); raise if it can't be read."""
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedFileError(
            f"{path}: unsupported file type {path.suffix!r}; expected one of {sorted(SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return fmt


def read_records(path: Path) -> Iterator[RawRecord]:
    """Yield every record of a batch file with its location, in file order."""
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[check_file(path)]
    yield from reader(path)


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    with path.open(encoding=ENCODING, errors="surrogateescape") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            location = Location(str(path), number)
            try:
                yield location, json.loads(line)
            except json.JSONDecodeError as e:
                yield location, RecordError(location, "<record>", f"not valid JSON: {e.msg}")


def _read_csv(path: Path) -> Iterator[RawRecord]:
    with path.open(encoding=ENCODING, errors="surrogateescape", newline="") as handle:
        # Record numbers count data rows: the header is row 0.
        for number, row in enumerate(csv.DictReader(handle), start=1):
            yield _from_columns(row, Location(str(path), number))


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
