"""Vectors that come with the records (``"vectors": {"clip": [...]}``), passed through as given."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.graph.schema import ENCODED_MODALITIES, check_modality_name
from mmgraph.ingest.encoders.base import Encoder, EncoderError, check_batch_size, empty


class VectorShapeError(EncoderError, InvalidArgumentError):
    """A precomputed vector that is not a flat run of finite numbers of the expected dimension."""


class PrecomputedEncoder(Encoder):
    """Passes precomputed vectors through unchanged (as float32) under their declared name.

    The modality is the vector's name and the tag ``<name>@given``. All vectors must have one
    dimension: ``dim`` if given, else that of the first vector encoded, which then fixes it.
    """

    version = "given"

    def __init__(self, name: str, dim: int | None = None) -> None:
        check_modality_name(name)
        if name in ENCODED_MODALITIES:
            raise ValueError(f"name {name!r} is reserved for mmgraph's own encoders")
        if dim is not None and dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        self.modality = self.name = name
        self._dim = dim

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise EncoderError(f"the dimension of {self.name!r} is known after the first encode")
        return self._dim

    def encode(self, inputs: Sequence[Sequence[float]], batch_size: int = 64) -> np.ndarray:
        """Stack vectors into an ``(n, dim)`` float32 array (``batch_size`` is unused)."""
        check_batch_size(batch_size)
        if not len(inputs):
            return empty(self.dim) if self._dim is not None else np.empty((0, 0), np.float32)
        expected = self._dim
        try:  # the usual case, validated vectors of one length: one conversion in C
            with np.errstate(over="ignore"):  # a value beyond float32 is named below
                matrix = np.asarray(inputs, dtype=np.float32)
        except (TypeError, ValueError):
            matrix = None  # ragged or not numbers: found and named row by row below
        if (
            matrix is not None
            and matrix.ndim == 2
            and matrix.shape[1]
            and matrix.shape[1] == (expected or matrix.shape[1])
            and np.isfinite(matrix).all()
        ):
            self._dim = matrix.shape[1]
            return matrix
        rows = []
        for i, vector in enumerate(inputs):
            try:
                row = np.asarray(vector, dtype=np.float32)
            except (TypeError, ValueError) as e:
                raise VectorShapeError(f"{self.name} vector {i} is not numbers: {e}") from e
            if row.ndim != 1 or not len(row):
                raise VectorShapeError(f"{self.name} vector {i} has shape {row.shape}, not (dim,)")
            expected = expected or len(row)
            if len(row) != expected:
                raise VectorShapeError(
                    f"{self.name} vector {i} has {len(row)} dimensions, expected {expected}"
                )
            if not np.isfinite(row).all():
                raise VectorShapeError(f"{self.name} vector {i} holds NaN or infinite values")
            rows.append(row)
        self._dim = expected
        return np.stack(rows)
