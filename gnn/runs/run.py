"""A saved run, loaded lazily: embeddings on first use, the network on the first query."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file as load_numpy

from mmgraph.core.errors import FailedPreconditionError, InvalidArgumentError
from mmgraph.gnn.alignment import MODALITIES as ALIGNED_SPACES
from mmgraph.gnn.calibration import Calibration
from mmgraph.gnn.fusion.cca_embedding import CCAEmbedding
from mmgraph.gnn.models.base import GraphMeta
from mmgraph.gnn.runs.network import Network, load_network
from mmgraph.gnn.runs.overlay import fresh_version, merge, read_fresh
from mmgraph.gnn.runs.record import ALIGNMENT
from mmgraph.gnn.spaces import FUSED, centered_unit

EdgeType = tuple[str, str, str]


class UnalignedSpaceError(FailedPreconditionError):
    """A query of one modality into the other's space of a run whose modalities are not
    aligned."""


class QueryEmbeddingError(InvalidArgumentError):
    """A query the run cannot embed (an unknown node type, modality or space)."""


class ModelRun:
    """A saved run, loaded lazily: embeddings on first use, the network on the first query."""

    def __init__(self, path: Path) -> None:
        info = json.loads((path / "run.json").read_text())
        self.path = path
        self.run_id: str = info["run_id"]
        self.model: str = info["model"]
        self.created: str = info["created"]
        self.config: dict[str, Any] = info["config"]
        self.metrics: dict[str, Any] = info["metrics"]
        self.trained_uids: dict[str, list[str]] = info["uids"]
        self.spaces: tuple[str, ...] = tuple(info["spaces"])
        self.relations: tuple[EdgeType, ...] = tuple(tuple(r) for r in info["relations"])
        self.meta = GraphMeta.from_dict(info["meta"])
        self.calibration = Calibration.from_list(self.config.get("calibration"))
        self._fresh = read_fresh(path)
        self.uids: dict[str, list[str]] = {
            t: uids + self._fresh.uids.get(t, []) for t, uids in self.trained_uids.items()
        }
        self._base: dict[str, np.ndarray] | None = None
        self._tensors: dict[str, np.ndarray] | None = None
        self._network: Network | None = None
        self._alignment: CCAEmbedding | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelRun({self.run_id!r}, model={self.model!r})"

    @property
    def history(self) -> list[dict[str, float]]:
        return json.loads((self.path / "history.json").read_text())

    @property
    def fresh_version(self) -> int:
        """The version of the overlay of appended nodes this object holds (0: none)."""
        return self._fresh.version

    def refreshed(self) -> ModelRun:
        """This run with the nodes appended to its overlay since it was loaded (the loaded
        embeddings and network are shared, not read again); ``self`` when there are none."""
        if fresh_version(self.path) == self.fresh_version:
            return self
        run = ModelRun(self.path)
        with self._lock:
            run._base, run._network = self._base, self._network
        return run

    def _arrays(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._tensors is None:
                if self._base is None:
                    self._base = load_numpy(str(self.path / "embeddings.safetensors"))
                self._tensors = merge(self._base, self._fresh.tensors)
            return self._tensors

    def _check_space(self, space: str) -> None:
        if space not in self.spaces:
            raise QueryEmbeddingError(
                f"run {self.run_id} has no space {space!r}; it has {list(self.spaces)}"
            )

    def embeddings(self, space: str = FUSED) -> dict[str, np.ndarray]:
        """node type -> L2-normalised rows of ``space`` (the rows of :meth:`space_rows`)."""
        self._check_space(space)
        arrays = self._arrays()
        return {t: arrays[f"{space}/{t}"] for t in self.uids if f"{space}/{t}" in arrays}

    def space_rows(self, space: str) -> dict[str, np.ndarray]:
        """node type -> the node rows that :meth:`embeddings` holds for ``space``."""
        self._check_space(space)
        arrays = self._arrays()
        return {t: arrays[f"{space}/{t}/rows"] for t in self.uids if f"{space}/{t}" in arrays}

    def raw_embeddings(self) -> dict[str, np.ndarray]:
        """node type -> the fused embeddings as the link decoder sees them (not normalised)."""
        arrays = self._arrays()
        return {t: arrays[f"raw/{t}"] for t in self.uids}

    def embed_query(
        self, node_type: str, modality: str, vectors: np.ndarray, space: str = FUSED
    ) -> np.ndarray:
        """Raw encoder vectors of one modality for nodes of ``node_type`` -> ``(q, d)`` unit rows
        comparable with :meth:`embeddings` of ``space``: through the run's model for the fused
        space, through its alignment (:mod:`mmgraph.gnn.alignment`) for ``text`` and ``image``.
        A query into the other modality's space needs the run to be :attr:`aligned`."""
        self._check_space(space)
        dims = self.meta.modalities.get(node_type)
        if dims is None:
            raise QueryEmbeddingError(f"run {self.run_id} has no node type {node_type!r}")
        if modality not in dims:
            raise QueryEmbeddingError(
                f"{node_type} nodes have no {modality!r} modality in run {self.run_id}; "
                f"they have {sorted(dims)}"
            )
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != dims[modality]:
            raise QueryEmbeddingError(
                f"{modality} query vectors must be (q, {dims[modality]}), got {x.shape}"
            )
        self.check_query_space(modality, space)
        own = modality if modality in self.spaces else FUSED
        alignment = self.alignment() if space != FUSED else None
        if alignment is not None:
            return centered_unit(
                alignment.transform_modality(modality, x), self.center(own, node_type)
            )
        return centered_unit(
            self.network().embed(node_type, modality, x), self.center(own, node_type)
        )

    def check_query_space(self, modality: str, space: str) -> None:
        """Refuse a query of ``modality`` into the other modality's space unless the run is
        :attr:`aligned` (cheap: call it before encoding the query)."""
        self._check_space(space)
        if space in ALIGNED_SPACES and space != modality and not self.aligned:
            raise UnalignedSpaceError(
                f"run {self.run_id} cannot search the {space} space with a {modality} query: its "
                "text and image are not aligned (too few nodes carry both); search its fused "
                f"space or the {modality} space instead"
            )

    @property
    def aligned(self) -> bool:
        """Whether the run's text and image spaces share one geometry, so that one modality's
        query searches the other's nodes (runs saved before alignments existed count as
        aligned, as they were served)."""
        return self.config.get("alignment", {}) is not None

    def alignment(self) -> CCAEmbedding | None:
        """The CCA its text and image spaces come from, when they come from one."""
        with self._lock:
            if self._alignment is None and (self.path / ALIGNMENT).is_file():
                self._alignment = CCAEmbedding.from_state_dict(
                    load_numpy(str(self.path / ALIGNMENT))
                )
            return self._alignment

    def modality_weights(self, node_type: str, row: int) -> dict[str, float]:
        """A node's weight per modality in its fused embedding, for a model that learns one per
        node (MGAT); empty for other models and for nodes embedded after training."""
        weights = self._arrays().get(f"modality_weights/{node_type}")
        if weights is None or row >= len(weights):
            return {}
        present = self.meta.modalities.get(node_type, {})
        return {
            m: float(w)
            for m, w in zip(self.meta.all_modalities, weights[row], strict=True)
            if m in present
        }

    def center(self, space: str, node_type: str) -> np.ndarray | float:
        """The mean subtracted from ``space``'s rows of ``node_type`` before they were
        normalised (0 for runs saved without one)."""
        return self._arrays().get(f"center/{space}/{node_type}", 0.0)

    def network(self) -> Network:
        """The model itself, loaded once from the run's weights."""
        with self._lock:
            if self._network is None:
                self._network = load_network(self)
            return self._network

    def score_links(
        self, edge_type: Sequence[str], src_rows: np.ndarray, dst_rows: np.ndarray
    ) -> np.ndarray:
        """Probabilities in [0, 1] that each ``(src_rows[i], dst_rows[i])`` is a link: the
        network's scores through the run's calibration (:mod:`mmgraph.gnn.calibration`)."""
        edge_type = self._check_relation(edge_type)
        raw = self.raw_embeddings()
        scores = self.network().logits(
            raw, edge_type, np.asarray(src_rows, np.int64), np.asarray(dst_rows, np.int64)
        )
        return self.calibration.probability(scores)

    def score_from(self, edge_type: Sequence[str], src_row: int) -> np.ndarray:
        """Probabilities of a link from ``src_row`` to every node of the destination type."""
        edge_type = self._check_relation(edge_type)
        n = len(self.uids[edge_type[2]])
        return self.score_links(edge_type, np.full(n, src_row), np.arange(n))

    def _check_relation(self, edge_type: Sequence[str]) -> EdgeType:
        key = tuple(edge_type)
        if key not in self.relations:
            raise QueryEmbeddingError(
                f"run {self.run_id} does not score {'/'.join(key)}; it scores "
                f"{['/'.join(r) for r in self.relations]}"
            )
        return key  # type: ignore[return-value]
