"""The CCA baseline as an embedding model: closed-form CCA between ``text`` and ``image``.

CCA is fitted on every node that carries both modalities (pooled over node types that share the
two encoders), holding out the retrieval nodes. A node's embedding is the mean of the canonical
projections of the modalities it has; a node with neither gets zeros. No message passing, no
training loop: the only fitted parameters are CCA's, plus a logistic calibration of cosine to a
link probability fitted on validation edges.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmgraph.core.errors import FailedPreconditionError
from mmgraph.gnn.fusion.cca import CCA

log = logging.getLogger(__name__)

MODALITIES = ("text", "image")


class CCABaselineError(FailedPreconditionError):
    """The graph has too few nodes with both modalities to fit CCA."""


def paired_matrices(
    data: HeteroData, exclude: dict[str, torch.Tensor] | None, at_least: int, who: str
) -> tuple[np.ndarray, np.ndarray]:
    """The ``text`` and the ``image`` rows of every node of ``data`` having both, except
    ``exclude``'s (the retrieval nodes), over the node types that carry both; refuses fewer
    than ``at_least`` such nodes in a message naming ``who`` needs them."""
    xs, ys = [], []
    for node_type in data.node_types:
        store = data[node_type]
        if not all(f"{m}_mask" in store for m in MODALITIES):
            continue
        both = store.text_mask & store.image_mask
        if exclude and node_type in exclude:
            both[exclude[node_type]] = False
        xs.append(store.text_x[both].numpy())
        ys.append(store.image_x[both].numpy())
    n = sum(len(x) for x in xs)
    if n < at_least:
        raise CCABaselineError(
            f"{who} needs at least {at_least} nodes with both text and image; the graph has {n}"
        )
    return np.concatenate(xs), np.concatenate(ys)


class CCAEmbedding:
    """Closed-form CCA between the ``text`` and ``image`` modalities, as node embeddings.

    Args:
        n_components: canonical dimensions kept (the embedding size).
        reg: ridge added to each view's covariance before whitening.
    """

    name = "cca"

    def __init__(self, n_components: int = 64, reg: float = 1e-3) -> None:
        self.cca = CCA(n_components=n_components, reg=reg)

    def fit(self, data: HeteroData, exclude: dict[str, torch.Tensor] | None = None) -> CCAEmbedding:
        """Fit on the nodes of ``data`` having both modalities, except ``exclude``'s."""
        x, y = paired_matrices(data, exclude, self.cca.n_components + 1, "CCA")
        n = len(x)
        limit = min(x.shape[1], y.shape[1], n - 1)
        if self.cca.n_components > limit:
            log.warning(
                "CCA: %d components asked, at most %d possible here; using %d",
                self.cca.n_components,
                limit,
                limit,
            )
            self.cca = CCA(n_components=limit, reg=self.cca.reg)
        self.cca.fit(x, y)
        return self

    @property
    def dim(self) -> int:
        return self.cca.n_components

    def transform_modality(self, modality: str, x: np.ndarray) -> np.ndarray:
        """Canonical projection of raw ``text`` or ``image`` vectors."""
        if modality == "text":
            return self.cca.transform_x(x).astype(np.float32)
        if modality == "image":
            return self.cca.transform_y(x).astype(np.float32)
        raise CCABaselineError(f"CCA embeds only {MODALITIES}, not {modality!r}")

    def embed(self, data: HeteroData) -> dict[str, torch.Tensor]:
        """Per node type, the mean of the projections of the modalities each node has."""
        out = {}
        for node_type in data.node_types:
            store = data[node_type]
            total = np.zeros((store.num_nodes, self.dim), dtype=np.float32)
            count = np.zeros((store.num_nodes, 1), dtype=np.float32)
            for modality in MODALITIES:
                if f"{modality}_mask" not in store:
                    continue
                mask = store[f"{modality}_mask"].numpy()
                if mask.any():
                    x = store[f"{modality}_x"].numpy()[mask]
                    total[mask] += self.transform_modality(modality, x)
                    count[mask] += 1
            out[node_type] = torch.from_numpy(total / np.maximum(count, 1))
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return self.cca.state_dict()

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> CCAEmbedding:
        model = cls.__new__(cls)
        model.cca = CCA.from_state_dict(state)
        return model
