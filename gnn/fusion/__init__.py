"""Fusion baselines without message passing: early, late, hybrid, the multimodal autoencoder,
adversarial cross-modal alignment and closed-form CCA (deep CCA: :mod:`.dcca_embedding`)."""

from mmgraph.gnn.fusion.adversarial import AdversarialAlignment
from mmgraph.gnn.fusion.autoencoder import MultimodalAutoencoder
from mmgraph.gnn.fusion.cca import CCA
from mmgraph.gnn.fusion.early import EarlyFusion
from mmgraph.gnn.fusion.hybrid import HybridFusion
from mmgraph.gnn.fusion.late import LateFusion

__all__ = [
    "CCA",
    "AdversarialAlignment",
    "EarlyFusion",
    "HybridFusion",
    "LateFusion",
    "MultimodalAutoencoder",
]
