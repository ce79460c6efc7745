"""Trained model runs on disk: one directory per run under ``$MMGRAPH_HOME/models``.

A run directory holds ``run.json`` (id, model, time, config, split, metrics, uids, the graph's
shape), ``weights.safetensors`` (the model's ``state_dict``, or a closed-form model's arrays),
``embeddings.safetensors`` (per space and node type) and ``history.json`` (training curve).
Loading never unpickles anything: tensors come from safetensors, the rest from JSON. The promoted
run is named by ``models/ACTIVE``, replaced atomically.

Nodes added to the graph after training get embeddings from the run's model without retraining
(:mod:`mmgraph.gnn.inductive`); :func:`append_nodes` keeps them in the run directory's overlay
``fresh.safetensors`` (the appended rows; uids and a version in its header), replaced atomically.
A loaded :class:`ModelRun` appends the overlay's nodes after the trained ones (so trained rows keep
their numbers); :attr:`ModelRun.trained_uids` are the nodes it was trained on.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

from mmgraph.core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from mmgraph.gnn.fusion.cca_embedding import CCAEmbedding
from mmgraph.gnn.models import MODELS
from mmgraph.gnn.models.base import GraphMeta, isolated_view

EdgeType = tuple[str, str, str]
ACTIVE = "ACTIVE"
FUSED = "fused"
FRESH = "fresh.safetensors"


class RunNotFoundError(NotFoundError):
    """No trained run with this id."""


class NoModelError(FailedPreconditionError):
    """No run is trained or promoted yet."""


class UnknownModelKindError(FailedPreconditionError):
    """A run made by a model this version of mmgraph does not have."""


class QueryEmbeddingError(InvalidArgumentError):
    """A query the run cannot embed (an unknown node type, modality or space)."""


class FreshNodesError(InvalidArgumentError):
    """Nodes to append that do not fit the run (an unknown node type or space, ragged rows)."""


def models_dir(home: Path) -> Path:
    return Path(home) / "models"


def new_run_id(model: str) -> str:
    """``<UTC time>-<model>-<random>``: sorts by time, says what it is."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{model}-{os.urandom(3).hex()}"


@dataclass
class RunRecord:
    """Everything a run directory holds, as the trainer hands it over to be saved."""

    run_id: str
    model: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    uids: dict[str, list[str]]
    meta: GraphMeta
    target_edge_types: list[EdgeType]
    raw: dict[str, np.ndarray]  # node type -> fused embeddings as the decoder sees them
    spaces: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # space -> type -> (emb, rows)
    weights: dict[str, torch.Tensor] | dict[str, np.ndarray]
    history: list[dict[str, float]] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # space -> type -> the mean subtracted before the rows of ``spaces`` were normalised
    centers: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def save_run(home: Path, record: RunRecord) -> Path:
    """Write a run directory (to a temporary name, renamed when complete)."""
    final = models_dir(home) / record.run_id
    tmp = final.with_name(f".{record.run_id}.tmp")
    tmp.mkdir(parents=True, exist_ok=False)
    tensors = {f"raw/{t}": np.ascontiguousarray(z, dtype=np.float32) for t, z in record.raw.items()}
    for space, per_type in record.spaces.items():
        for node_type, (emb, rows) in per_type.items():
            tensors[f"{space}/{node_type}"] = np.ascontiguousarray(emb, dtype=np.float32)
            tensors[f"{space}/{node_type}/rows"] = np.asarray(rows, dtype=np.int64)
    for space, per_type in record.centers.items():
        for node_type, center in per_type.items():
            tensors[f"center/{space}/{node_type}"] = np.asarray(center, dtype=np.float32)
    save_numpy(tensors, str(tmp / "embeddings.safetensors"))
    if record.weights and isinstance(next(iter(record.weights.values())), torch.Tensor):
        save_torch(
            {k: v.contiguous() for k, v in record.weights.items()}, str(tmp / "weights.safetensors")
        )
    else:
        save_numpy(dict(record.weights), str(tmp / "weights.safetensors"))
    info = {
        "run_id": record.run_id,
        "model": record.model,
        "created": record.created,
        "config": record.config,
        "metrics": record.metrics,
        "uids": record.uids,
        "spaces": list(record.spaces),
        "relations": [list(et) for et in record.target_edge_types],
        "meta": record.meta.to_dict(),
    }
    (tmp / "run.json").write_text(json.dumps(info, indent=1, default=float))
    (tmp / "history.json").write_text(json.dumps(record.history))
    tmp.rename(final)
    return final


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
        self._fresh = read_fresh(path)
        self.uids: dict[str, list[str]] = {
            t: uids + self._fresh.uids.get(t, []) for t, uids in self.trained_uids.items()
        }
        self._base: dict[str, np.ndarray] | None = None
        self._tensors: dict[str, np.ndarray] | None = None
        self._network: Any = None
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
                self._tensors = _merge(self._base, self._fresh.tensors)
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
        comparable with :meth:`embeddings` of ``space`` (every space of a run shares one)."""
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
        out = self.network().embed(node_type, modality, x)
        own = modality if modality in self.spaces else FUSED
        return centered_unit(out, self.center(own, node_type))

    def center(self, space: str, node_type: str) -> np.ndarray | float:
        """The mean subtracted from ``space``'s rows of ``node_type`` before they were
        normalised (0 for runs saved without one)."""
        return self._arrays().get(f"center/{space}/{node_type}", 0.0)

    def network(self) -> _Network:
        """The model itself, loaded once from the run's weights."""
        with self._lock:
            if self._network is None:
                self._network = _load_network(self)
            return self._network

    def score_links(
        self, edge_type: Sequence[str], src_rows: np.ndarray, dst_rows: np.ndarray
    ) -> np.ndarray:
        """Probabilities in [0, 1] that each ``(src_rows[i], dst_rows[i])`` is a link."""
        edge_type = self._check_relation(edge_type)
        raw = self.raw_embeddings()
        logits = self.network().logits(
            raw, edge_type, np.asarray(src_rows, np.int64), np.asarray(dst_rows, np.int64)
        )
        return 1.0 / (1.0 + np.exp(-logits))

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


class _Network:
    """The network behind a run: embeds single-modality queries and scores links."""

    def __init__(self, run: ModelRun) -> None:
        self.run = run
        self.model: Any = None
        self.cca: CCAEmbedding | None = None
        self.calibration = np.asarray(run.config.get("calibration", [1.0, 0.0]), np.float64)

    def embed(self, node_type: str, modality: str, x: np.ndarray) -> np.ndarray:
        if self.cca is not None:
            return self.cca.transform_modality(modality, x)
        with torch.inference_mode():
            view = isolated_view(self.run.meta, node_type, modality, torch.from_numpy(x))
            return self.model(view)[node_type].float().numpy()

    def logits(
        self, raw: dict[str, np.ndarray], edge_type: EdgeType, src: np.ndarray, dst: np.ndarray
    ) -> np.ndarray:
        if self.model is None:
            a = _unit(raw[edge_type[0]][src])
            b = _unit(raw[edge_type[2]][dst])
            scale, bias = self.calibration
            return (a * b).sum(1) * scale + bias
        z = {t: torch.from_numpy(v) for t, v in raw.items()}
        index = torch.from_numpy(np.stack([src, dst]))
        with torch.inference_mode():
            return self.model.link_logits(z, edge_type, index).float().numpy()


def _load_network(run: ModelRun) -> _Network:
    net = _Network(run)
    path = str(run.path / "weights.safetensors")
    if run.model == "cca":
        net.cca = CCAEmbedding.from_state_dict(load_numpy(path))
        return net
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
    net.model = model
    return net


@dataclass(frozen=True)
class FreshNodes:
    """A run's overlay: the appended nodes' uids per type and their rows of every array (keys
    as in ``embeddings.safetensors``; ``<space>/<type>/rows`` number rows of the merged uids)."""

    version: int = 0
    uids: dict[str, list[str]] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def read_fresh(path: Path) -> FreshNodes:
    """The overlay of the run directory ``path`` (empty when nothing was appended)."""
    file = Path(path) / FRESH
    if not file.is_file():
        return FreshNodes()
    with safe_open(str(file), framework="np") as f:
        header = f.metadata() or {}
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (a file)
    return FreshNodes(int(header.get("version", 0)), json.loads(header.get("uids", "{}")), tensors)


def fresh_version(path: Path) -> int:
    """The overlay's version, read from its header alone (0 when there is none): cheap enough
    to poll."""
    file = Path(path) / FRESH
    if not file.is_file():
        return 0
    with safe_open(str(file), framework="np") as f:
        return int((f.metadata() or {}).get("version", 0))


def append_nodes(
    run: ModelRun,
    uids: dict[str, list[str]],
    raw: dict[str, np.ndarray],
    spaces: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
) -> int:
    """Append nodes embedded after training to ``run``'s overlay; return how many were new.

    Shapes as in :class:`RunRecord`: ``raw[type]`` has one row per ``uids[type]``; ``spaces``
    maps space -> type -> ``(unit rows, rows into uids[type])``. Nodes the run (or its overlay)
    already has are skipped, so appending twice is harmless. The overlay is rewritten to a
    temporary file and renamed over the old one under a lock, so readers see all or nothing.
    """
    unknown = sorted(set(uids) - set(run.trained_uids))
    if unknown:
        raise FreshNodesError(f"run {run.run_id} has no node type(s) {unknown}")
    bad = sorted(set(spaces) - set(run.spaces))
    if bad:
        raise FreshNodesError(f"run {run.run_id} has no space(s) {bad}; it has {list(run.spaces)}")
    for node_type, names in uids.items():
        if len(raw[node_type]) != len(names):
            raise FreshNodesError(
                f"raw[{node_type!r}] has {len(raw[node_type])} rows for {len(names)} uids"
            )
    with _locked(run.path / ".fresh.lock"):
        current = read_fresh(run.path)
        tensors = dict(current.tensors)
        merged = {t: list(names) for t, names in current.uids.items()}
        added = 0
        for node_type, names in uids.items():
            known = set(run.trained_uids[node_type]) | set(merged.get(node_type, []))
            keep = []
            for i, uid in enumerate(names):
                if uid not in known:
                    known.add(uid)
                    keep.append(i)
            if not keep:
                continue
            start = len(run.trained_uids[node_type]) + len(merged.get(node_type, []))
            local = np.full(len(names), -1, dtype=np.int64)
            local[keep] = np.arange(len(keep))
            merged.setdefault(node_type, []).extend(names[i] for i in keep)
            _extend(tensors, f"raw/{node_type}", np.asarray(raw[node_type])[keep])
            for space, per_type in spaces.items():
                if node_type not in per_type:
                    continue
                emb, rows = per_type[node_type]
                rows = local[np.asarray(rows, dtype=np.int64)]
                chosen = rows >= 0
                if chosen.any():
                    _extend(tensors, f"{space}/{node_type}", np.asarray(emb)[chosen])
                    _extend(tensors, f"{space}/{node_type}/rows", start + rows[chosen])
            added += len(keep)
        if added:
            tmp = run.path / f".{FRESH}.{os.getpid()}"
            header = {"version": str(current.version + 1), "uids": json.dumps(merged)}
            save_numpy(tensors, str(tmp), metadata=header)
            tmp.replace(run.path / FRESH)
    return added


def _extend(tensors: dict[str, np.ndarray], key: str, rows: np.ndarray) -> None:
    dtype = np.int64 if key.endswith("/rows") else np.float32
    rows = np.asarray(rows, dtype=dtype)
    tensors[key] = np.ascontiguousarray(
        np.concatenate([tensors[key], rows]) if key in tensors else rows
    )


def _merge(base: dict[str, np.ndarray], fresh: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trained arrays with the overlay's rows appended (unchanged arrays are not copied)."""
    merged = dict(base)
    for key, rows in fresh.items():
        merged[key] = np.concatenate([base[key], rows]) if key in base else rows
    return merged


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_run(home: Path, run_id: str | None = None) -> ModelRun:
    """The run ``run_id`` (default: the promoted one) under ``home``."""
    run_id = run_id or active_run_id(home)
    if run_id is None:
        raise NoModelError(
            f"no model is promoted under {models_dir(home)}: train one (`mmgraph train`) and "
            "promote it (`mmgraph models promote RUN`)"
        )
    path = models_dir(home) / run_id
    if "/" in run_id or run_id.startswith(".") or not (path / "run.json").is_file():
        raise RunNotFoundError(f"no model run {run_id!r} under {models_dir(home)}")
    return ModelRun(path)


def list_runs(home: Path) -> list[ModelRun]:
    """Every complete run under ``home``, newest first."""
    root = models_dir(home)
    # A run being saved lives in a dot-folder until it is complete.
    runs = [
        ModelRun(p)
        for p in (root.iterdir() if root.is_dir() else ())
        if not p.name.startswith(".") and (p / "run.json").is_file()
    ]
    return sorted(runs, key=lambda r: r.created, reverse=True)


def active_run_id(home: Path) -> str | None:
    """The promoted run's id, or ``None``."""
    marker = models_dir(home) / ACTIVE
    return marker.read_text().strip() or None if marker.is_file() else None


def set_active_run(home: Path, run_id: str) -> None:
    """Promote ``run_id`` (atomically: a temporary file renamed over the marker)."""
    load_run(home, run_id)
    marker = models_dir(home) / ACTIVE
    tmp = marker.with_name(f".{ACTIVE}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(run_id)
    tmp.replace(marker)


def centered_unit(x: np.ndarray, center: np.ndarray | float = 0.0) -> np.ndarray:
    """Rows of ``x`` minus ``center``, L2-normalised: what a space's search compares. Learned
    embeddings often share one large common direction (every cosine near 1); removing the
    space's mean keeps the neighbourhoods and makes cosine scores spread and mean something."""
    return _unit(np.asarray(x, dtype=np.float32) - center)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
