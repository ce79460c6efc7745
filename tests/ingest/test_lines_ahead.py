"""JSONL lines validated ahead by a worker process come back, in input order, as the outcomes
validating them in the load's own process gives, and a run with them hands on, holds and
quarantines what a run without them does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgraph.ingest.lines_ahead import CHUNK, LinesAhead, Refused
from mmgraph.ingest.options import IngestOptions, IngestResult
from mmgraph.ingest.quarantine import Quarantine
from mmgraph.ingest.records import Item, JsonText, Location, RecordError, Relation, parse_record
from mmgraph.ingest.scratch import HeldRelation, PlainRelation, Scratch, relation_values
from mmgraph.ingest.stream import ItemBatch, RunInput, stream_records

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


class _Recording:
    """A sink that does not merge (as the bulk load's), recording what it is handed; it writes
    every item it is handed."""

    merges = False

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch
        self.calls: list[object] = []

    def stored_dimension(self, node_type: str, name: str) -> int | None:
        return None

    def write_items(self, batch: ItemBatch, repeats: set[Location]) -> None:
        self.calls.append(
            ("items", [(loc, item) for loc, item, _ in batch], sorted(repeats, key=str))
        )
        self.scratch.mark_written(item.uid for _, item, _ in batch)

    def finish_items(self) -> None:
        self.calls.append("finish_items")

    def write_relations(self, batch: list[HeldRelation]) -> None:
        self.calls.append(("relations", batch))

    def write_plain_relations(self, batch: list[PlainRelation]) -> None:
        self.calls.append(("plain", list(batch)))

    def finish(self) -> None:
        self.calls.append("finish")


def test_a_run_with_lines_ahead_hands_on_and_quarantines_what_one_without_does(
    tmp_path: Path,
) -> None:
    block = [
        '{"uid": "a%d", "type": "A", "vectors": {"v": [1.0, 2.0]}}',
        '{"src": "a%d", "dst": "b%d", "type": "R"}',
        '{"src": "b%d", "dst": "a%d", "type": "R", "weight": 2.5}',  # plain
        '{"uid": "b%d", "type": "A", "text": "src", "vectors": {"v": [3.0, 4.0]}}',
        '{"src": "a%d", "dst": "b%d", "type": "R"}',  # its key repeats
        '{"src": "a%d", "dst": "ghost", "type": "R"}',
        '{"src": "a%d", "dst": "b%d", "type": "bad type"}',
        '{"uid": "c%d", "type": "A", "vectors": {"v": [1.0]}}',  # the wrong dimension
        '{"src": "a%d", "dst": "b%d", "type": "S", "props": {"k": "v"}}',
        "{not json",
        '{"uid": "a%d", "type": "A", "numbers": {"n": 1.0}}',  # a repeat
    ]
    lines = [line.replace("%d", str(i)) for i in range(700) for line in block]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runs = []
    for name, ahead in (("itself", None), ("ahead", LinesAhead())):
        options = IngestOptions(quarantine_dir=tmp_path / name, batch_size=500)
        quarantine, result = Quarantine(options.quarantine_dir, "run"), IngestResult("run")
        with Scratch() as scratch:
            sink = _Recording(scratch)
            read = stream_records(
                RunInput.files([path]), sink, options, scratch, quarantine, result, None, ahead
            )
        if ahead is not None:
            ahead.__exit__(None, None, None)
        runs.append((read, sink.calls, quarantine.path.read_text(), quarantine.count))
    assert runs[0] == runs[1]
    kinds = {call[0] for call in runs[0][1] if isinstance(call, tuple)}
    assert kinds == {"items", "plain", "relations"}
    assert runs[0][3] == 3 * 700  # a bad type, a wrong dimension, not JSON
