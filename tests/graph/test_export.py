"""Export from the real Neo4j to numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

from mmgraph.graph import export, writeback
from mmgraph.graph.export import ExportError, read_graph
from mmgraph.graph.store import GraphStore, NodeRow, RelRow


def _vec(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


@pytest.fixture
def small(store: GraphStore) -> GraphStore:
    nodes = [
        NodeRow("p:1", "Product", {}, {"text": (_vec(1, 2, 3), "minilm@1")}),
        NodeRow(
            "p:2",
            "Product",
            {},
            {"text": (_vec(4, 5, 6), "minilm@1"), "clip": (_vec(7, 8), "clip@given")},
        ),
        NodeRow("p:3", "Product", {}, {}),
        NodeRow("t:a", "Tag", {}, {"text": (_vec(0, 0, 1, 0), "minilm@1")}),
    ]
    rels = [
        RelRow("p:1", "t:a", "HAS_TAG", 0.5),
        RelRow("p:3", "t:a", "HAS_TAG", 2.0),
        RelRow("p:1", "p:2", "BOUGHT_WITH"),
    ]
    store.write_batch(nodes, rels, "run-1")
    return store


@pytest.mark.parametrize("page_size", [1, 2, 10_000])
def test_export_matches_what_was_written(small: GraphStore, page_size: int) -> None:
    arrays = read_graph(small, page_size=page_size)

    assert arrays.uids == {"Product": ["p:1", "p:2", "p:3"], "Tag": ["t:a"]}
    assert arrays.index("Product") == {"p:1": 0, "p:2": 1, "p:3": 2}
    text_x, text_mask = arrays.features["Product", "text"]
    np.testing.assert_array_equal(text_x, [[1.0, 2, 3], [4, 5, 6], [0, 0, 0]])
    assert text_mask.tolist() == [True, True, False]
    clip_x, clip_mask = arrays.features["Product", "clip"]
    assert clip_x.tolist() == [[0, 0], [7, 8], [0, 0]]
    assert clip_mask.tolist() == [False, True, False]
    assert arrays.features["Tag", "text"][0].tolist() == [[0, 0, 1, 0]]
    assert arrays.encoders == {
        "Product": {"clip": "clip@given", "text": "minilm@1"},
        "Tag": {"text": "minilm@1"},
    }

    src, dst, weight = arrays.edges["Product", "HAS_TAG", "Tag"]
    assert (src.tolist(), dst.tolist(), weight.tolist()) == ([0, 2], [0, 0], [0.5, 2.0])
    src, dst, _ = arrays.edges["Product", "BOUGHT_WITH", "Product"]
    assert (src.tolist(), dst.tolist()) == ([0], [1])
    assert set(arrays.edges) == {
        ("Product", "HAS_TAG", "Tag"),
        ("Product", "BOUGHT_WITH", "Product"),
    }
    assert arrays.nbytes == sum(a.nbytes for pair in arrays.features.values() for a in pair) + sum(
        a.nbytes for triple in arrays.edges.values() for a in triple
    )


def test_export_refuses_mixed_encoders(store: GraphStore) -> None:
    store.write_batch(
        [
            NodeRow("p:1", "Product", {}, {"text": (_vec(1, 2), "minilm@1")}),
            NodeRow("p:2", "Product", {}, {"text": (_vec(1, 2), "other@1")}),
        ],
        [],
        "run-1",
    )
    with pytest.raises(ExportError, match="several encoders"):
        read_graph(store)


def test_export_refuses_mixed_dimensions(store: GraphStore) -> None:
    store.write_batch(
        [
            NodeRow("p:1", "Product", {}, {"clip": (_vec(1, 2), "clip@given")}),
            NodeRow("p:2", "Product", {}, {"clip": (_vec(1, 2, 3), "clip@given")}),
        ],
        [],
        "run-1",
    )
    with pytest.raises(ExportError, match="dimension"):
        read_graph(store)


def test_export_of_an_empty_graph(store: GraphStore) -> None:
    arrays = read_graph(store)
    assert arrays.uids == {} and arrays.features == {} and arrays.edges == {}


def test_a_graph_changed_between_the_passes_is_refused(
    small: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_edges = export._read_edges

    def write_then_read_edges(*args: object) -> object:
        small.write_batch(
            [NodeRow("p:9", "Product", {}, {})], [RelRow("p:9", "t:a", "HAS_TAG")], "run-2"
        )
        return read_edges(*args)

    monkeypatch.setattr(export, "_read_edges", write_then_read_edges)
    with pytest.raises(ExportError, match="changed during the export"):
        read_graph(small, page_size=2)


def test_written_back_predictions_are_not_exported(small: GraphStore) -> None:
    writeback.write_predicted_links(small, "run-1", "HAS_TAG", [("p:2", "t:a", 0.9)])
    arrays = read_graph(small)
    assert set(arrays.edges) == {
        ("Product", "HAS_TAG", "Tag"),
        ("Product", "BOUGHT_WITH", "Product"),
    }
    assert arrays.edges["Product", "HAS_TAG", "Tag"][0].tolist() == [0, 2]
    assert "PREDICTED" not in small.counts().relationships
