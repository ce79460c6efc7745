"""Record validation: every bad record names its location and field."""

from __future__ import annotations

import numpy as np
import pytest

from mmgraph.ingest.records import Item, Location, RecordError, Relation, parse_record

HERE = Location("batch.jsonl", 7)


def test_item_and_relation_parse() -> None:
    item = parse_record(
        {
            "kind": "item",
            "uid": "e:1",
            "type": "Emoji",
            "text": "grin",
            "vectors": {"clip": [1, 0.5]},
            "numbers": {"added": 2015},
            "props": {"tags": ["a", "b"]},
        },
        HERE,
    )
    assert isinstance(item, Item)
    assert item.vectors == {"clip": [1.0, 0.5]} and item.numbers == {"added": 2015.0}
    relation = parse_record({"src": "e:1", "dst": "t:a", "type": "HAS_TAG"}, HERE)
    assert isinstance(relation, Relation) and relation.weight == 1.0


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"type": "Emoji"}, "uid", "required"),
        ({"uid": "", "type": "Emoji"}, "uid", "at least 1"),
        ({"uid": "x", "type": "Item) DETACH DELETE n //"}, "type", "invalid type name"),
        ({"uid": "x", "type": "Entity"}, "type", "reserved"),
        ({"uid": "x", "type": "E", "vectors": {"clip": ["a", 1]}}, "vectors.clip.0", "number"),
        ({"uid": "x", "type": "E", "vectors": {"clip": "abc"}}, "vectors.clip", "list"),
        ({"uid": "x", "type": "E", "vectors": {"v": [1.0, float("nan")]}}, "vectors.v", "value 1"),
        ({"uid": "x", "type": "E", "vectors": {"v": [1e39]}}, "vectors.v", "finite float32"),
        ({"uid": "x", "type": "E", "vectors": {"clip": []}}, "vectors", "empty"),
        ({"uid": "x", "type": "E", "vectors": {"text": [1.0]}}, "vectors", "reserved"),
        ({"uid": "x", "type": "E", "numbers": {"p": "3"}}, "numbers.p", "number"),
        ({"uid": "x", "type": "E", "props": {"x": {"a": 1}}}, "props", "not a string, number"),
        ({"uid": "x", "type": "E", "props": {"x": 2**70}}, "props", "does not fit in 64 bits"),
        ({"uid": "x", "type": "E", "props": {"x": [1.0, float("nan")]}}, "props", "not a finite"),
        ({"uid": "\ud800", "type": "E"}, "uid", "not valid UTF-8"),
        ({"uid": "x", "type": "E", "text": "a\udcff"}, "text", "not valid UTF-8"),
        ({"uid": "x", "type": "E", "props": {"s": "\ud800"}}, "props", "not valid UTF-8"),
        ({"src": "a", "dst": "b", "type": "R", "props": {"weight": "heavy"}}, "props", "reserved"),
        ({"uid": "x", "type": "A", "colour": "red", "size": 3}, "colour", "and 1 more problem"),
        ({"kind": "item", "type": "bad type"}, "uid", "required (and 1 more problem)"),
        ({"uid": "x", "type": "E", "props": {"x": [1, "a"]}}, "props", "one type"),
        ({"uid": "x", "type": "E", "props": {"uid": "y"}}, "props", "reserved"),
        ({"uid": "x", "type": "E", "props": {"a_vec": 1}}, "props", "reserved"),
        ({"uid": "x", "type": "E", "colour": "red"}, "colour", "Extra inputs"),
        ({"src": "a", "dst": "b", "type": "R", "weight": float("inf")}, "weight", "finite"),
        ({"src": "a", "type": "R"}, "dst", "required"),
        ({"kind": "node", "uid": "x"}, "kind", "does not match"),
    ],
)
def test_bad_records_name_field_and_reason(raw: dict, field: str, message: str) -> None:
    with pytest.raises(RecordError) as raised:
        parse_record(raw, HERE)
    error = raised.value
    assert (error.location, error.field) == (HERE, field)
    assert message in error.message
    assert str(error).startswith("batch.jsonl#7: ")


def test_a_record_must_be_an_object() -> None:
    with pytest.raises(RecordError, match="expected an object"):
        parse_record([1, 2], HERE)


def test_a_validated_vector_brings_the_float32_array_that_is_written() -> None:
    item = parse_record({"uid": "e:1", "type": "Emoji", "vectors": {"clip": [1, 0.1]}}, HERE)
    assert isinstance(item, Item)
    vector = item.vectors["clip"]
    assert vector == [1.0, 0.1]
    assert vector.array.dtype == np.float32
    np.testing.assert_array_equal(vector.array, np.array([1.0, 0.1], dtype=np.float32))
