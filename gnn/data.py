"""The exported graph as a PyTorch Geometric ``HeteroData``, cached by the graph's ingest state.

``data[T]["<modality>_x"]`` is a feature matrix (zeros where a node lacks the modality) with the
presence mask ``data[T]["<modality>_mask"]``; ``data[S, R, D].edge_index`` / ``.edge_weight``
hold the relationships. Tensors share memory with the exported numpy arrays (no copy).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch_geometric.data import HeteroData

from mmgraph.graph import audit
from mmgraph.graph.export import DEFAULT_PAGE_SIZE, GraphArrays, read_graph
from mmgraph.graph.store import GraphStore

log = logging.getLogger(__name__)


@dataclass
class GraphExport:
    """The exported graph and the maps between uids and row indices per node type."""

    data: HeteroData
    uids: dict[str, list[str]]
    encoders: dict[str, dict[str, str]] = field(default_factory=dict)

    def index(self, node_type: str) -> dict[str, int]:
        """uid -> row index for one node type."""
        return {uid: i for i, uid in enumerate(self.uids[node_type])}


def to_heterodata(arrays: GraphArrays) -> GraphExport:
    """Wrap exported arrays as a ``HeteroData`` (zero-copy)."""
    data = HeteroData()
    for node_type, rows in arrays.uids.items():
        data[node_type].num_nodes = len(rows)
    for (node_type, modality), (x, mask) in arrays.features.items():
        data[node_type][f"{modality}_x"] = torch.from_numpy(x)
        data[node_type][f"{modality}_mask"] = torch.from_numpy(mask)
    for edge_type, (src, dst, weight) in arrays.edges.items():
        store = data[edge_type]
        store.edge_index = torch.from_numpy(np.stack([src, dst]))
        store.edge_weight = torch.from_numpy(weight)
    return GraphExport(data, dict(arrays.uids), arrays.encoders)


def export_heterodata(
    store: GraphStore, page_size: int = DEFAULT_PAGE_SIZE, cache_dir: Path | None = None
) -> GraphExport:
    """Export the graph to ``HeteroData``; with ``cache_dir``, reuse the tensors of an earlier
    export while the graph's ingest state (last run, node and relationship counts) is the same."""
    if cache_dir is None:
        return to_heterodata(read_graph(store, page_size))
    key = _state_key(store)
    folder = Path(cache_dir) / key
    if (folder / "meta.json").exists():
        log.info("reusing the cached export %s", folder)
        return to_heterodata(_load(folder))
    arrays = read_graph(store, page_size)
    _save(arrays, folder)
    return to_heterodata(arrays)


def _state_key(store: GraphStore) -> str:
    """A key that changes whenever an ingest run or any write changes the graph's counts."""
    counts = store.counts().to_dict()
    runs = audit.runs(store, limit=1)
    last = {k: str(runs[0].get(k)) for k in ("id", "finished", "status")} if runs else {}
    text = json.dumps({"counts": counts, "last_run": last}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save(arrays: GraphArrays, folder: Path) -> None:
    """Arrays as safetensors and names as JSON; never pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    features = []
    for i, ((node_type, modality), (x, mask)) in enumerate(arrays.features.items()):
        tensors[f"f{i}.x"], tensors[f"f{i}.mask"] = x, mask.astype(np.uint8)
        features.append([node_type, modality])
    edges = []
    for i, (edge_type, (src, dst, weight)) in enumerate(arrays.edges.items()):
        tensors[f"e{i}.src"], tensors[f"e{i}.dst"], tensors[f"e{i}.w"] = src, dst, weight
        edges.append(list(edge_type))
    save_file(tensors, str(folder / "arrays.safetensors"))
    meta = {"uids": arrays.uids, "encoders": arrays.encoders, "features": features, "edges": edges}
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(folder / "meta.json")


def _load(folder: Path) -> GraphArrays:
    meta = json.loads((folder / "meta.json").read_text())
    tensors = load_file(str(folder / "arrays.safetensors"))
    features = {
        (t, m): (tensors[f"f{i}.x"], tensors[f"f{i}.mask"].astype(bool))
        for i, (t, m) in enumerate(meta["features"])
    }
    edges = {
        tuple(e): (tensors[f"e{i}.src"], tensors[f"e{i}.dst"], tensors[f"e{i}.w"])
        for i, e in enumerate(meta["edges"])
    }
    return GraphArrays(meta["uids"], features, meta["encoders"], edges)
