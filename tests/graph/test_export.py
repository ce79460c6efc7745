"""Export from the real Neo4j to HeteroData."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgraph.graph.export import ExportError, export_heterodata
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
    exported = export_heterodata(small, page_size=page_size)
    data = exported.data

    assert exported.uids == {"Product": ["p:1", "p:2", "p:3"], "Tag": ["t:a"]}
    assert exported.index("Product") == {"p:1": 0, "p:2": 1, "p:3": 2}
    assert (data["Product"].num_nodes, data["Tag"].num_nodes) == (3, 1)
    torch.testing.assert_close(
        data["Product"].text_x, torch.tensor([[1.0, 2, 3], [4, 5, 6], [0, 0, 0]])
    )
    assert data["Product"].text_mask.tolist() == [True, True, False]
    assert data["Product"].clip_x.tolist() == [[0, 0], [7, 8], [0, 0]]
    assert data["Product"].clip_mask.tolist() == [False, True, False]
    assert data["Tag"].text_x.tolist() == [[0, 0, 1, 0]]
    assert exported.encoders == {
        "Product": {"clip": "clip@given", "text": "minilm@1"},
        "Tag": {"text": "minilm@1"},
    }

    has_tag = data["Product", "HAS_TAG", "Tag"]
    assert has_tag.edge_index.tolist() == [[0, 2], [0, 0]]
    assert has_tag.edge_weight.tolist() == [0.5, 2.0]
    assert data["Product", "BOUGHT_WITH", "Product"].edge_index.tolist() == [[0], [1]]
    assert set(data.edge_types) == {
        ("Product", "HAS_TAG", "Tag"),
        ("Product", "BOUGHT_WITH", "Product"),
    }


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
        export_heterodata(store)


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
        export_heterodata(store)


def test_export_of_an_empty_graph(store: GraphStore) -> None:
    exported = export_heterodata(store)
    assert exported.uids == {} and exported.data.node_types == []
