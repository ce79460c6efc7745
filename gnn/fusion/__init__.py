"""Fusion baselines without message passing: early, late, hybrid and closed-form CCA."""

from mmgraph.gnn.fusion.cca import CCA
from mmgraph.gnn.fusion.early import EarlyFusion
from mmgraph.gnn.fusion.hybrid import HybridFusion
from mmgraph.gnn.fusion.late import LateFusion

__all__ = ["CCA", "EarlyFusion", "HybridFusion", "LateFusion"]
