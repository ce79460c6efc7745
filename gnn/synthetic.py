"""A graph whose answer is known, for benchmarks and tests: a contextual stochastic block model.

Items fall into planted communities (blocks). Links follow PyG's ``stochastic_blockmodel_graph``:
a share ``q`` of each item's expected links stays inside its block, the rest spreads over the
others. Every item carries a text-like and an image-like feature vector, each its block's centre
plus noise, the centre's share being ``signal``: links and features both tell an item's block,
each as strongly as asked, so whether a model combines them is measurable.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.utils import stochastic_blockmodel_graph

FEATURE_DIM = 32


def contextual_sbm(
    blocks: int, size: int, degree: float, q: float, signal: float, seed: int = 0
) -> tuple[HeteroData, dict[str, list[str]]]:
    """``Item`` nodes (``blocks * size``) with ``text`` and ``image`` features, ``LINKS``
    between items (one direction per pair, about ``degree`` per item), and each item's block
    through ``IN_BLOCK`` to a ``Block`` node (the clustering label); and the uids."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    n = blocks * size
    probs = torch.full((blocks, blocks), (1 - q) * degree / (n - size))
    probs.fill_diagonal_(q * degree / (size - 1))
    edges = stochastic_blockmodel_graph([size] * blocks, probs, directed=False)
    block = np.repeat(np.arange(blocks), size)
    data = HeteroData()
    data["Item"].num_nodes = n
    for modality in ("text", "image"):
        centres = _unit(rng.normal(size=(blocks, FEATURE_DIM)))
        noise = _unit(rng.normal(size=(n, FEATURE_DIM)))
        x = signal * centres[block] + (1 - signal) * noise
        data["Item"][f"{modality}_x"] = torch.from_numpy(x.astype(np.float32))
        data["Item"][f"{modality}_mask"] = torch.ones(n, dtype=torch.bool)
    data["Block"].num_nodes = blocks
    data["Item", "LINKS", "Item"].edge_index = edges[:, edges[0] < edges[1]]
    data["Item", "IN_BLOCK", "Block"].edge_index = torch.stack(
        [torch.arange(n), torch.from_numpy(block)]
    )
    uids = {"Item": [f"i:{i}" for i in range(n)], "Block": [f"b:{i}" for i in range(blocks)]}
    return data, uids


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
