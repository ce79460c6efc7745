"""The offline importer's CSV: headers by column set, exact values, and what CSV cannot carry."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mmgraph.graph.import_files import ARRAY_DELIMITER, ImportFiles
from mmgraph.graph.store import NodeRow, RelRow


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_nodes_are_grouped_by_columns_and_hold_exact_values(tmp_path: Path) -> None:
    files = ImportFiles(tmp_path, "run-1")
    vector = np.array([1.5, -2.25, 3e-8, -0.0], dtype=np.float32)
    later = files.add_nodes(
        [
            NodeRow("a,1", "Item", {"rank": 3, "score": 0.1, "ok": True, "tags": ["x", "y;z"]}),
            NodeRow("b", "Item", {"rank": 4, "score": 2.5, "ok": False, "tags": ["q"]}),
            NodeRow('c"2', "Tag", {"text": "two\nlines"}, {"emb": (vector, "emb@given")}),
        ]
    )
    nodes, relationships = files.close()
    assert later == [] and relationships == [] and files.nodes == 3
    by_header = {tuple(_rows(g.header)[0]): g for g in nodes}
    plain = by_header[
        (
            "uid:ID(Entity)",
            ":LABEL",
            "type",
            "source",
            "ok:boolean",
            "rank:long",
            "score:double",
            "tags:string[]",
        )
    ]
    assert not plain.multiline
    assert _rows(plain.data) == [
        ["a,1", f"Entity{ARRAY_DELIMITER}Item", "Item", "run-1", "true", "3", "0.1", "x\x1fy;z"],
        ["b", f"Entity{ARRAY_DELIMITER}Item", "Item", "run-1", "false", "4", "2.5", "q"],
    ]
    (text,) = [g for g in nodes if g.multiline]
    header, row = _rows(text.header)[0], _rows(text.data)[0]
    assert header[4:] == ["emb_enc:string", "emb_vec:byte[]", "text:string"]
    assert row[0] == 'c"2' and row[6] == "two\nlines"
    signed = np.array([int(b) for b in row[5].split(ARRAY_DELIMITER)], dtype=np.int8)
    np.testing.assert_array_equal(signed.view("<f4"), vector)


def test_values_csv_cannot_carry_are_handed_back(tmp_path: Path) -> None:
    files = ImportFiles(tmp_path, "run-1")
    later = files.add_nodes(
        [NodeRow("a", "Item", {"none": [], "odd": ["", "x"], "bad": [f"a{ARRAY_DELIMITER}b"]})]
    )
    assert later == [
        NodeRow("a", "Item", {"none": [], "odd": ["", "x"], "bad": [f"a{ARRAY_DELIMITER}b"]})
    ]
    rest = files.add_relationships([RelRow("a", "b", "LINKS", 0.5, {"n": 1, "none": []})])
    assert rest == [RelRow("a", "b", "LINKS", 0.5, {"none": []})]
    nodes, (links,) = files.close()
    assert _rows(links.header)[0][3:] == ["weight:double", "source", "n:long"]
    assert _rows(links.data) == [["a", "b", "LINKS", "0.5", "run-1", "1"]]
    assert _rows(nodes[0].data) == [["a", f"Entity{ARRAY_DELIMITER}Item", "Item", "run-1"]]
