"""JSONL lines validated from their text give the records, errors and quarantine lines that
parsing them first gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmgraph.ingest.quarantine import Quarantine
from mmgraph.ingest.readers import read_records
from mmgraph.ingest.records import JsonText, Location, RecordError, parse_record
from mmgraph.ingest.scratch import Scratch

HERE = Location("batch.jsonl", 3)
LINES = [
    '{"uid": "a", "type": "A", "vectors": {"v": [1, 2.5, -3e-3]}, "numbers": {"n": 2}}\n',
    '{"src": "a", "dst": "b", "type": "R", "weight": 1}\r\n',
    '{"kind": "item", "uid": "b", "type": "B", "props": {"x": [1, 2], "y": -0.0}}',
    '{"uid": "a", "uid": "b", "type": "A"}',
    '{"uid": "x", "type": "E", "text": "\\u00e9\\ud83d\\ude00"}',
    '{"uid": "x", "type": "E", "image": "x.png"}',
    # Refused, each for the reason parsing first gives.
    '{"uid": "x", "type": "E", "vectors": {"v": [1.0, NaN]}}',
    '{"uid": "x", "type": "E", "vectors": {"v": [1e39]}}',
    '{"uid": "x", "type": "E", "vectors": {"v": [1e400]}}',
    '{"uid": "\\ud800", "type": "E"}',
    '{"uid": "x", "type": "E", "text": "a\\udcff"}',
    '{"uid": "x", "type": "E", "props": {"x": 123456789012345678901234567890}}',
    '{"uid": "x", "type": "A", "colour": "red", "size": 3}',
    '{"kind": "relation", "uid": "a", "type": "T"}',
    '{"kind": "node", "uid": "x"}',
    '{"src": "a", "type": "R"}',
    '{"uid": "x", "type": "E", "image": ""}',
    "[1, 2]",
    '"text"',
    '{"uid": "a", "type": "A",}',
    '{"uid": "a", "type": "A"} {}',
    "{not json",
    '{"uid": "caf\udce9", "type": "A"}',
]


def _outcome(raw: object) -> object:
    try:
        return parse_record(raw, HERE)
    except RecordError as e:
        return (e.location, e.field, e.message)


@pytest.mark.parametrize("line", LINES)
def test_a_line_validated_from_its_text_is_the_parsed_line_validated(line: str) -> None:
    try:
        parsed: object = json.loads(line)
    except json.JSONDecodeError as e:
        parsed = None
        expected: object = (HERE, "<record>", f"not valid JSON: {e.msg}")
    if parsed is not None:
        expected = _outcome(parsed)
    assert _outcome(JsonText(line)) == expected


def test_jsonl_read_as_text_gives_the_records_of_jsonl_read_as_values(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(LINES).encode("utf-8", "surrogateescape") + b"\n")
    values = list(read_records(path))
    texts = list(read_records(path, json_text=True))
    assert [loc for loc, _ in texts] == [loc for loc, _ in values]
    assert all(isinstance(raw, JsonText) for _, raw in texts)
    for (location, value), (_, text) in zip(values, texts, strict=True):
        if isinstance(value, RecordError):
            value = value.location, value.field, value.message
            with pytest.raises(RecordError) as raised:
                parse_record(text, location)
            assert (raised.value.location, raised.value.field, raised.value.message) == value
        else:
            assert _outcome(text) == _outcome(value)


def test_quarantine_and_scratch_show_json_text_as_its_value(tmp_path: Path) -> None:
    quarantine = Quarantine(tmp_path, "run")
    error = RecordError(HERE, "type", "no")
    quarantine.add(error, JsonText('{"uid": "u:1", "type": "A"}\n'))
    quarantine.add(error, JsonText("{not json\n"))
    entries = [json.loads(line) for line in quarantine.path.read_text().splitlines()]
    assert [e["raw"] for e in entries] == [{"uid": "u:1", "type": "A"}, None]
    assert quarantine.rejected == {"u:1"}

    line = JsonText('{"src": "a", "dst": "b", "type": "R"}')
    with Scratch() as scratch:
        relation = parse_record(line, HERE)
        scratch.hold_relation(HERE, relation, line)
        scratch.hold_relation(HERE, relation, {"src": "a", "dst": "b", "type": "R"})
        first, second = (held.raw() for held in scratch.relations())
    assert isinstance(first, JsonText) and first == line
    assert second == {"src": "a", "dst": "b", "type": "R"}


@pytest.mark.parametrize(
    "line",
    [
        '{"uid": "a", "type": "A", "text": "src"}',
        '{"uid": "a", "type": "A", "props": {"src": "b"}}',
        '{"kind": "item", "uid": "a", "type": "A", "src": "b"}',
        '{"src": "a", "dst": "b", "type": "R", "props": {"uid": "c"}}',
    ],
)
def test_a_line_naming_src_is_the_record_kind_its_fields_make_it(line: str) -> None:
    # A line that names "src" is tried as a relation first: an item (or a refusal) that names it
    # in a value comes out as parsing the line first gives.
    assert _outcome(JsonText(line)) == _outcome(json.loads(line))
