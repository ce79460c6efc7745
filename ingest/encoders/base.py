"""The interface every modality encoder implements, and helpers the encoders share.

An encoder's :attr:`~Encoder.tag` (``name@version``) is stored beside each vector it makes, so
vectors of different encoders, or of one encoder whose output would differ, are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmgraph.core.errors import MmgraphError

OFFLINE_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class EncoderError(MmgraphError):
    """An encoder could not turn its inputs into vectors."""


class Encoder(ABC):
    """Turns a batch of one modality's raw values into an ``(n, dim)`` float32 matrix.

    Attributes:
        modality: ``"text"``, ``"image"``, ``"num"`` or a precomputed vector's name.
        name: the model or method, e.g. ``"all-minilm-l6-v2"``.
        version: changes whenever the vectors for the same inputs would change.
        dim: the vectors' dimension.
    """

    modality: str
    name: str
    version: str
    dim: int

    @property
    def tag(self) -> str:
        """``name@version``: stored on the node as ``<modality>_enc``."""
        return f"{self.name}@{self.version}"

    @abstractmethod
    def encode(self, inputs: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """Encode ``inputs`` into a C-contiguous float32 array of shape ``(len(inputs), dim)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modality={self.modality!r}, tag={self.tag!r})"


def fingerprint(parts: Any, length: int = 10) -> str:
    """A short stable hash of JSON-able ``parts``: a version that changes when they change."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def resolve_device(device: str | None) -> str:
    """``device`` if given, else ``"cuda"`` if torch sees a GPU, else ``"cpu"``."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def go_offline() -> None:
    """Forbid Hugging Face libraries the network, before they are imported or load a model."""
    os.environ.update(OFFLINE_ENVIRONMENT)


def check_batch_size(batch_size: int) -> int:
    """Return ``batch_size`` if it is a positive integer, else raise ``ValueError``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return batch_size


def empty(dim: int) -> np.ndarray:
    """The ``(0, dim)`` float32 result of encoding no inputs."""
    return np.empty((0, dim), dtype=np.float32)
