"""Named numbers standardised into a fixed-order vector, with statistics learnt by :meth:`fit`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmgraph.ingest.encoders.base import Encoder, EncoderError, check_batch_size, fingerprint


class NotFittedError(EncoderError):
    """An encoder that needs :meth:`fit` was used before it."""


@dataclass(frozen=True)
class _Stats:
    """A fit's columns (in vector order) with their means and standard deviations."""

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray


class NumericEncoder(Encoder):
    """Standardises rows of named numbers (``{"price": 3.5, "year": 2015}``) into vectors.

    :meth:`fit` learns the columns (all names seen, sorted), each column's mean and (population)
    standard deviation over the rows that have it; a constant column gets std 1. :meth:`encode`
    maps each value ``x`` to ``(x - mean) / std``; a missing (or NaN) value becomes 0, the mean;
    names not seen by ``fit`` are ignored. The version hashes the columns and statistics, so two
    different fits never share a tag.
    """

    modality = "num"
    name = "standardize"

    def __init__(self) -> None:
        self._stats: _Stats | None = None

    @property
    def fitted(self) -> bool:
        return self._stats is not None

    @property
    def columns(self) -> list[str]:
        """The fitted column names, in vector order."""
        return list(self._fitted().columns)

    @property
    def dim(self) -> int:
        return len(self._fitted().columns)

    @property
    def version(self) -> str:
        return fingerprint(self.to_dict())

    def fit(self, rows: Sequence[Mapping[str, float]]) -> NumericEncoder:
        """Learn columns, means and stds from ``rows``; return ``self``."""
        columns = sorted({name for row in rows for name, x in row.items() if not _isnan(x)})
        if not columns:
            raise ValueError(f"cannot fit on {len(rows)} rows with no numbers")
        values = self._matrix(rows, columns)
        std = np.nanstd(values, axis=0)
        self._stats = _Stats(
            tuple(columns), np.nanmean(values, axis=0), np.where(std > 0, std, 1.0)
        )
        return self

    def encode(self, inputs: Sequence[Mapping[str, float]], batch_size: int = 64) -> np.ndarray:
        """Standardise rows into an ``(n, n_columns)`` float32 array (``batch_size`` is unused)."""
        check_batch_size(batch_size)
        stats = self._fitted()
        values = (self._matrix(inputs, stats.columns) - stats.mean) / stats.std
        return np.ascontiguousarray(np.nan_to_num(values, nan=0.0), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as plain JSON-able data."""
        stats = self._fitted()
        return {
            "columns": list(stats.columns),
            "mean": stats.mean.tolist(),
            "std": stats.std.tolist(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> NumericEncoder:
        """Rebuild an encoder from :meth:`to_dict`'s output."""
        columns = tuple(state["columns"])
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if not columns or mean.shape != (len(columns),) or std.shape != (len(columns),):
            raise ValueError(
                f"state needs equal-length columns, mean and std, got {len(columns)} columns, "
                f"mean {mean.shape}, std {std.shape}"
            )
        if not (np.isfinite(mean).all() and (std > 0).all() and np.isfinite(std).all()):
            raise ValueError("state has a mean that is not finite or a std that is not positive")
        encoder = cls()
        encoder._stats = _Stats(columns, mean, std)
        return encoder

    def _fitted(self) -> _Stats:
        if self._stats is None:
            raise NotFittedError("NumericEncoder is not fitted: call fit(rows) or from_dict(state)")
        return self._stats

    @staticmethod
    def _matrix(rows: Sequence[Mapping[str, float]], columns: Sequence[str]) -> np.ndarray:
        """Rows as a float64 ``(n, len(columns))`` matrix, NaN where a value is missing."""
        index = {name: j for j, name in enumerate(columns)}
        values = np.full((len(rows), len(columns)), np.nan)
        for i, row in enumerate(rows):
            for name, value in row.items():
                j = index.get(name)
                if j is None:
                    continue
                number = float(value)
                if math.isinf(number):
                    raise ValueError(f"row {i}: {name!r} is {number}; numbers must be finite")
                values[i, j] = number
        return values


def _isnan(value: float) -> bool:
    return math.isnan(float(value))
