"""The model behind a run, loaded from its weights: embeds single-modality queries and scores
links. A trained network runs its model; a projection (closed-form CCA, deep CCA) projects and
scores by a calibrated cosine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file as load_torch

from mmgraph.core.errors import FailedPreconditionError
from mmgraph.gnn.fusion.cca_embedding import CCAEmbedding
from mmgraph.gnn.fusion.dcca_embedding import DCCAEmbedding
from mmgraph.gnn.models import MODELS
from mmgraph.gnn.models.base import isolated_view
from mmgraph.gnn.spaces import unit

if TYPE_CHECKING:
    from mmgraph.gnn.runs.run import ModelRun

EdgeType = tuple[str, str, str]


class UnknownModelKindError(FailedPreconditionError):
    """A run made by a model this version of mmgraph does not have."""


class TrainedNetwork:
    """A trained :class:`~mmgraph.gnn.models.base.EmbeddingModel` and the run's schema."""

    def __init__(self, run: ModelRun, model: Any) -> None:
        self.meta = run.meta
        self.model = model

    def embed(self, node_type: str, modality: str, x: np.ndarray) -> np.ndarray:
        """Nodes of ``node_type`` embedded from one modality alone (isolated nodes)."""
        with torch.inference_mode():
            view = isolated_view(self.meta, node_type, modality, torch.from_numpy(x))
            return self.model(view)[node_type].float().numpy()

    def logits(
        self, raw: dict[str, np.ndarray], edge_type: EdgeType, src: np.ndarray, dst: np.ndarray
    ) -> np.ndarray:
        """The decoder's logits of the links ``src[i] -> dst[i]`` from the fused embeddings."""
        z = {t: torch.from_numpy(v) for t, v in raw.items()}
        index = torch.from_numpy(np.stack([src, dst]))
        with torch.inference_mode():
            return self.model.link_logits(z, edge_type, index).float().numpy()


# The models whose runs hold a projection's arrays instead of an EmbeddingModel's state.
PROJECTIONS: dict[str, type[CCAEmbedding]] = {
    CCAEmbedding.name: CCAEmbedding,
    DCCAEmbedding.name: DCCAEmbedding,
}


class ClosedFormNetwork:
    """A projection (closed-form or deep CCA): projects each modality; a link's score is the
    cosine of its ends."""

    def __init__(self, cca: CCAEmbedding) -> None:
        self.cca = cca

    def embed(self, node_type: str, modality: str, x: np.ndarray) -> np.ndarray:
        """Raw vectors of one modality projected onto the canonical directions."""
        return self.cca.transform_modality(modality, x)

    def logits(
        self, raw: dict[str, np.ndarray], edge_type: EdgeType, src: np.ndarray, dst: np.ndarray
    ) -> np.ndarray:
        """The cosine of the links ``src[i] -> dst[i]``."""
        a = unit(raw[edge_type[0]][src])
        b = unit(raw[edge_type[2]][dst])
        return (a * b).sum(1)


Network = TrainedNetwork | ClosedFormNetwork


def load_network(run: ModelRun) -> Network:
    """The network that made ``run``, from its weights."""
    path = str(run.path / "weights.safetensors")
    if run.model in PROJECTIONS:
        return ClosedFormNetwork(PROJECTIONS[run.model].from_state_dict(load_numpy(path)))
    cls = MODELS.get(run.model)
    if cls is None:
        raise UnknownModelKindError(
            f"run {run.run_id} was made by a model this version does not know: {run.model!r}"
        )
    weights = load_torch(path)
    options = dict(run.config.get("model_options", {}))
    # Runs saved before the input skip existed carry no skip weights: build them without it.
    if "input_skip" not in options and not any("skip.lins." in k for k in weights):
        options["input_skip"] = False
    model = cls(run.meta, list(run.relations), **options)
    model.load_state_dict(weights)
    model.eval()
    return TrainedNetwork(run, model)
