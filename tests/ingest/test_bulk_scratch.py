"""A bulk load's scratch file and import files without Neo4j: one transaction, the relations it
writes as bare rows, and the node files its worker process writes, held rows included."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mmgraph.graph.import_files import ImportFiles
from mmgraph.graph.store import NodeRow, RelRow
from mmgraph.ingest.bulk import ImportSink
from mmgraph.ingest.encoders import NumericEncoder
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.node_files import NodeFilesWriter
from mmgraph.ingest.numbers import num_vectors
from mmgraph.ingest.options import IngestOptions, IngestResult
from mmgraph.ingest.quarantine import Quarantine
from mmgraph.ingest.records import Location, Relation
from mmgraph.ingest.scratch import Scratch


def test_the_import_sink_adds_its_tables_inside_the_scratch_files_transaction(
    tmp_path: Path,
) -> None:
    options = IngestOptions(quarantine_dir=tmp_path / "quarantine")
    with Scratch() as scratch:
        assert scratch.db.in_transaction
        files = ImportFiles(tmp_path, "run")
        quarantine = Quarantine(options.quarantine_dir, "run")
        with NodeFilesWriter(tmp_path, "run") as node_files:
            result = IngestResult("run")
            ImportSink(files, node_files, options, Encoders(), scratch, quarantine, result)
        # Otherwise every later write to the scratch file would be a transaction of its own.
        assert scratch.db.in_transaction


def test_plain_relations_and_the_others_part_the_held_relations_in_input_order() -> None:
    relations = [
        Relation(src="a", dst="b", type="R"),  # its key repeats: the upsert merges both
        Relation(src="a", dst="b", type="R", weight=2.0),
        Relation(src="b", dst="a", type="R", weight=0.5),  # plain
        Relation(src="a", dst="c", type="R"),  # c was not written
        Relation(src="a", dst="ghost", type="R"),  # no such item
        Relation(src="b", dst="c", type="S", props={"k": "v"}),  # properties
        Relation(src='a"q', dst="a", type="S"),  # plain, with a quote
    ]
    with Scratch() as scratch:
        for uid in ("a", "b", "c", 'a"q'):
            scratch.claim(uid, "Item", Location("f", 0))
        scratch.mark_written(["a", "b", 'a"q'])
        for number, relation in enumerate(relations, start=1):
            scratch.hold_relation(Location("f", number), relation, {"n": number})
        plain = list(scratch.plain_relations())
        others = list(scratch.relations(flag_repeats=True, plain=False))
        everything = list(scratch.relations(flag_repeats=True))
    assert plain == [("b", "a", "R", 0.5), ('a"q', "a", "S", 1.0)]
    assert [held.location.number for held in others] == [1, 2, 4, 5, 6]
    assert [held.repeated for held in others] == [True, True, False, False, False]
    assert [held.location.number for held in everything] == list(range(1, 8))


def test_plain_relationships_are_the_rows_of_relationships_without_properties(
    tmp_path: Path,
) -> None:
    rows = [("a", 'b"2', "LINKS", 0.1), ("c,1", "a", "LINKS", 2.0)]
    plain, full = ImportFiles(tmp_path / "plain", "run"), ImportFiles(tmp_path / "full", "run")
    for files in (plain, full):
        files.folder.mkdir()
    plain.add_plain_relationships(rows)
    assert full.add_relationships([RelRow(*row) for row in rows]) == []
    (_, (plain_group,)), (_, (full_group,)) = plain.close(), full.close()
    assert plain.relationships == full.relationships == 2
    assert plain_group.header.read_text() == full_group.header.read_text()
    assert plain_group.data.read_bytes() == full_group.data.read_bytes()


def test_the_node_files_worker_writes_the_files_import_files_writes(tmp_path: Path) -> None:
    vector = np.array([1.5, -2.25, 3e-8], dtype=np.float32)
    rows = [
        (position, NodeRow(f"n{position}", "Item", {"rank": position, "none": []}))
        for position in range(1, 40)
    ] + [(40, NodeRow("v", "Item", {"text": "two\nlines"}, {"emb": (vector, "emb@given")}))]
    direct = ImportFiles(tmp_path / "direct", "run")
    direct.folder.mkdir()
    later = direct.add_nodes([row for _, row in rows])
    (tmp_path / "worker").mkdir()
    with NodeFilesWriter(tmp_path / "worker", "run") as writer:
        sent_back = [*writer.add(rows[:10]), *writer.add(rows[10:])]
        groups, last = writer.close()
    assert sorted(sent_back + last, key=lambda p: p[0]) == [
        (position, NodeRow(f"n{position}", "Item", {"none": []})) for position in range(1, 40)
    ]
    assert len(later) == 39
    expected, _ = direct.close()
    assert [(g.header.name, g.data.name, g.multiline) for g in groups] == [
        (g.header.name, g.data.name, g.multiline) for g in expected
    ]
    for group, same in zip(groups, expected, strict=True):
        assert group.header.read_bytes() == same.header.read_bytes()
        assert group.data.read_bytes() == same.data.read_bytes()


def test_held_rows_are_written_with_the_num_vectors_of_the_fit_released(tmp_path: Path) -> None:
    numbers = [{"price": 1.0}, {"price": 3.0, "stock": 2.0}, {"other": 5.0}]
    rows = [
        (1, NodeRow("a", "Item", {"rank": 1})),
        (2, NodeRow("b", "Item", {"rank": 2, "none": []})),
        (3, NodeRow("c", "Item", {"text": "two\nlines"})),
    ]
    fit = NumericEncoder().fit(numbers[:2])
    direct = ImportFiles(tmp_path / "direct", "run")
    direct.folder.mkdir()
    with_vectors = [
        NodeRow(
            row.uid, row.type, row.props, {"num": (vector, fit.tag)} if vector is not None else {}
        )
        for (_, row), vector in zip(rows, num_vectors(fit, numbers), strict=True)
    ]
    assert num_vectors(fit, numbers)[2] is None  # none of the fit's names: no vector
    direct.add_nodes(with_vectors)
    (tmp_path / "worker").mkdir()
    with NodeFilesWriter(tmp_path / "worker", "run") as writer:
        held = [(position, row, n) for (position, row), n in zip(rows, numbers, strict=True)]
        later = writer.hold(held)
        writer.release({"Item": fit})
        groups, last = writer.close()
    assert later + last == [(2, NodeRow("b", "Item", {"none": []}))]
    expected, _ = direct.close()

    def lines(groups: list) -> set[tuple[str, ...]]:
        return {
            tuple(sorted(zip(header, row, strict=True)))
            for group in groups
            for header in _csv(group.header)
            for row in _csv(group.data)
        }

    assert lines(groups) == lines(expected) and len(lines(groups)) == 3


def _csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))
