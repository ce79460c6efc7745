"""JSONL lines validated ahead by a worker process come back, in input order, as the outcomes
validating them in the load's own process gives."""

from __future__ import annotations

from typing import Any

from mmgraph.ingest.lines_ahead import CHUNK, LinesAhead, Refused
from mmgraph.ingest.records import Item, JsonText, Location, RecordError, Relation, parse_record
from mmgraph.ingest.scratch import relation_values

LINES = [
    '{"uid": "a", "type": "A", "vectors": {"v": [1, 2.5]}, "numbers": {"n": 2}}',
    '{"src": "a", "dst": "b", "type": "R", "weight": 0.5}',
    '{"src": "a", "dst": "b", "type": "R", "props": {"k": [1, 2]}}',
    '{"uid": "a", "type": "A", "text": "src", "vectors": {"v": [1.5, -2]}}',  # an item
    '{"kind": "item", "uid": "a", "type": "A", "src": "b"}',  # refused
    '{"src": "a", "dst": "b", "type": "bad type"}',
    '{"src": "a", "dst": "", "type": "R"}',
    '{"src": "a", "dst": "b", "type": "R", "weight": NaN}',
    '{"src": "a" "dst": "b"}',
]


def _expected(raw: Any, location: Location) -> object:
    try:
        record = parse_record(raw, location)
    except RecordError as e:
        return Refused(e.field, e.message)
    return relation_values(record) if isinstance(record, Relation) else record


def test_lines_ahead_give_the_outcomes_of_validating_each_line_in_input_order() -> None:
    records: list[tuple[Location, Any]] = [
        (Location("in.jsonl", n), JsonText(LINES[n % len(LINES)])) for n in range(1, 2 * CHUNK + 10)
    ]
    records.append((Location("in.csv", 1), {"src": "a", "dst": "b", "type": "R"}))
    with LinesAhead() as ahead:
        taken = list(ahead.outcomes(records))
    assert [(location, raw) for location, raw, _ in taken] == records
    for location, raw, outcome in taken:
        if isinstance(raw, JsonText) and '"src"' in raw:
            assert outcome == _expected(raw, location)
        else:
            assert outcome is None  # validated by the load itself
    items = [outcome for _, _, outcome in taken if isinstance(outcome, Item)]
    assert items and all(item.vectors["v"].array.tolist() == [1.5, -2.0] for item in items)
    refusals = [outcome for _, _, outcome in taken if isinstance(outcome, Refused)]
    assert refusals and all(
        r.error(Location("f", 1)).location == Location("f", 1) for r in refusals
    )
