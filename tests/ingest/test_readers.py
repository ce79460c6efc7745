"""Batch file readers: same records from JSONL, CSV and Parquet; bad rows become errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from mmgraph.core.errors import NotFoundError
from mmgraph.ingest.readers import UnsupportedFileError, file_sha256, read_records
from mmgraph.ingest.records import Location, RecordError, parse_record

ROWS = [
    {
        "kind": "item",
        "uid": "e:1",
        "type": "Emoji",
        "text": "grin",
        "vectors": {"clip": [0.5, 1.0]},
        "props": {"n": 1},
    },
    {"kind": "relation", "src": "e:1", "dst": "e:1", "type": "SAME", "weight": 2.0},
]


def _flat(rows: list[dict]) -> list[dict]:
    return [{k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()} for r in rows]


def test_the_three_formats_give_the_same_records(tmp_path: Path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    csv = tmp_path / "a.csv"
    pd.DataFrame(_flat(ROWS)).to_csv(csv, index=False)
    parquet = tmp_path / "a.parquet"
    pd.DataFrame(_flat(ROWS)).to_parquet(parquet)

    for path in (jsonl, csv, parquet):
        records = list(read_records(path))
        assert [loc for loc, _ in records] == [Location(str(path), 1), Location(str(path), 2)]
        assert [raw for _, raw in records] == ROWS, path.suffix


def test_bad_rows_come_out_as_errors_in_place(tmp_path: Path) -> None:
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"uid": "a", "type": "A"}\n{oops\n')
    (_, first), (loc, second) = read_records(jsonl)
    assert first == {"uid": "a", "type": "A"}
    assert isinstance(second, RecordError) and loc.number == 2 and "not valid JSON" in str(second)

    csv = tmp_path / "b.csv"
    csv.write_text('uid,type,props,weight\na,A,"{bad",\nb,B,,x\n')
    (_, props_error), (_, weight_error) = read_records(csv)
    assert isinstance(props_error, RecordError) and props_error.field == "props"
    assert isinstance(weight_error, RecordError) and weight_error.field == "weight"


def test_unknown_suffix_and_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFileError, match=".xml"):
        list(read_records(tmp_path / "a.xml"))
    with pytest.raises(NotFoundError):
        list(read_records(tmp_path / "missing.jsonl"))


def test_byte_order_mark_and_bad_bytes(tmp_path: Path) -> None:
    csv = tmp_path / "bom.csv"
    csv.write_bytes("\ufeffuid,type\na,A\n".encode())
    ((_, row),) = read_records(csv)
    assert row == {"uid": "a", "type": "A"}

    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"uid": "ok", "type": "A"}\n{"uid": "caf\xe9", "type": "A"}\n')
    (_, good), (location, bad) = read_records(jsonl)
    assert good == {"uid": "ok", "type": "A"}
    with pytest.raises(RecordError) as raised:
        parse_record(bad, location)
    assert (raised.value.field, location.number) == ("uid", 2)
    assert "not valid UTF-8" in raised.value.message


def test_reading_with_a_digest_hashes_the_whole_file_in_the_same_read(tmp_path: Path) -> None:
    jsonl = tmp_path / "h.jsonl"
    # Longer than the hashing reader's block, with a BOM and CRLF line ends.
    lines = [json.dumps({"uid": f"u:{i}", "type": "A", "text": "x" * 50}) for i in range(30_000)]
    jsonl.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    csv = tmp_path / "h.csv"
    pd.DataFrame(_flat(ROWS)).to_csv(csv, index=False)
    parquet = tmp_path / "h.parquet"
    pd.DataFrame(_flat(ROWS)).to_parquet(parquet)

    for path in (jsonl, csv, parquet):
        digest = hashlib.sha256()
        records = list(read_records(path, digest))
        assert records == list(read_records(path))
        expected = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest.hexdigest() == file_sha256(path) == expected, path.suffix
    assert len(list(read_records(jsonl))) == 30_000
