"""Fused-embedding models: one file per model, one interface (:mod:`.base`).

:data:`MODELS` maps each model's ``name`` to its class: the message-passing models of this
package and the fusion baselines of :mod:`mmgraph.gnn.fusion` (imported here so that the
registry is complete whichever of the two packages is imported first).
"""

import mmgraph.gnn.fusion  # noqa: F401  (defines, hence registers, the fusion baselines)
from mmgraph.gnn.models.base import (
    MODELS,
    EmbeddingModel,
    GraphMeta,
    ModelConfigError,
    isolated_view,
)
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.gcn import GCN
from mmgraph.gnn.models.hgt import HGT
from mmgraph.gnn.models.inputs import ConcatInput, ModalityInput
from mmgraph.gnn.models.mgat import MGAT

__all__ = [
    "GCN",
    "HGT",
    "MGAT",
    "MODELS",
    "ConcatInput",
    "DistMultDecoder",
    "EmbeddingModel",
    "GraphMeta",
    "ModalityInput",
    "ModelConfigError",
    "isolated_view",
]
