"""The exported graph as HeteroData, and the export cache, on the real local Neo4j."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmgraph.gnn.data import export_heterodata
from mmgraph.graph.store import GraphStore, NodeRow, RelRow


def _graph(store: GraphStore) -> GraphStore:
    vec = np.asarray([1, 2, 3], dtype=np.float32)
    store.write_batch(
        [
            NodeRow("p:1", "Product", {}, {"text": (vec, "minilm@1")}),
            NodeRow("p:2", "Product", {}, {}),
            NodeRow("t:a", "Tag", {}, {}),
        ],
        [RelRow("p:1", "t:a", "HAS_TAG", 0.5), RelRow("p:2", "t:a", "HAS_TAG")],
        "run-1",
    )
    return store


def test_heterodata_holds_features_masks_and_edges(store: GraphStore) -> None:
    exported = export_heterodata(_graph(store))
    data = exported.data
    assert (data["Product"].num_nodes, data["Tag"].num_nodes) == (2, 1)
    torch.testing.assert_close(data["Product"].text_x, torch.tensor([[1.0, 2, 3], [0, 0, 0]]))
    assert data["Product"].text_mask.tolist() == [True, False]
    edge = data["Product", "HAS_TAG", "Tag"]
    assert edge.edge_index.tolist() == [[0, 1], [0, 0]]
    assert edge.edge_weight.tolist() == [0.5, 1.0]
    assert exported.index("Product") == {"p:1": 0, "p:2": 1}
    assert exported.encoders == {"Product": {"text": "minilm@1"}, "Tag": {}}


def test_the_cache_is_reused_until_the_graph_changes(store: GraphStore, tmp_path: Path) -> None:
    _graph(store)
    first = export_heterodata(store, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    again = export_heterodata(store, cache_dir=tmp_path)
    assert again.uids == first.uids
    torch.testing.assert_close(again.data["Product"].text_x, first.data["Product"].text_x)
    assert again.data["Product"].text_mask.dtype == torch.bool
    store.write_batch([NodeRow("p:3", "Product", {}, {})], [], "run-2")
    changed = export_heterodata(store, cache_dir=tmp_path)
    assert changed.uids["Product"] == ["p:1", "p:2", "p:3"]
    assert len(list(tmp_path.iterdir())) == 2
