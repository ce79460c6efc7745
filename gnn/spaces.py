"""Embedding spaces as a search compares them: unit rows, centred on the space's mean.

A run keeps its fused embeddings (space ``fused``) and, for models that can embed one modality
alone, a space per modality (``text``, ``image``): every space of a run shares one geometry, so a
text query mapped into ``image`` is compared with the nodes' image-alone embeddings.
"""

from __future__ import annotations

import numpy as np

FUSED = "fused"


def centered_unit(x: np.ndarray, center: np.ndarray | float = 0.0) -> np.ndarray:
    """Rows of ``x`` minus ``center``, L2-normalised: what a space's search compares. Learned
    embeddings often share one large common direction (every cosine near 1); removing the
    space's mean keeps the neighbourhoods and makes cosine scores spread and mean something."""
    return unit(np.asarray(x, dtype=np.float32) - center)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` L2-normalised (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
