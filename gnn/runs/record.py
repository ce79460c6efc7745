"""A trained run as the trainer hands it over (:class:`RunRecord`), written as a run directory.

A run directory holds ``run.json`` (id, model, time, config, split, metrics, uids, the graph's
shape), ``weights.safetensors`` (the model's ``state_dict``, or a closed-form model's arrays),
``embeddings.safetensors`` (per space and node type), ``history.json`` (training curve) and,
when its text and image spaces are aligned by a CCA, ``alignment.safetensors``.
Nothing is pickled: tensors go to safetensors, the rest to JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from mmgraph.gnn.models.base import GraphMeta

EdgeType = tuple[str, str, str]
ALIGNMENT = "alignment.safetensors"


def models_dir(home: Path) -> Path:
    """Where the runs under ``home`` live."""
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
    # the CCA that aligns text and image for the run's spaces, when it has one (its arrays)
    alignment: dict[str, np.ndarray] | None = None
    # node type -> (n, len(meta.all_modalities)) per-node modality weights, for models with them
    modality_weights: dict[str, np.ndarray] = field(default_factory=dict)


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
    for node_type, weights in record.modality_weights.items():
        tensors[f"modality_weights/{node_type}"] = np.asarray(weights, dtype=np.float32)
    save_numpy(tensors, str(tmp / "embeddings.safetensors"))
    if record.weights and isinstance(next(iter(record.weights.values())), torch.Tensor):
        save_torch(
            {k: v.contiguous() for k, v in record.weights.items()}, str(tmp / "weights.safetensors")
        )
    else:
        save_numpy(dict(record.weights), str(tmp / "weights.safetensors"))
    if record.alignment is not None:
        save_numpy(dict(record.alignment), str(tmp / ALIGNMENT))
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
