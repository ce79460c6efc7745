"""A run's overlay of nodes embedded after training (``fresh.safetensors`` in its directory).

Nodes added to the graph after training get embeddings from the run's model without retraining
(:mod:`mmgraph.gnn.inductive`); :func:`append_nodes` keeps them in the overlay (the appended
rows; uids and a version in its header), replaced atomically under a lock, so readers see all or
nothing. A loaded run appends the overlay's nodes after the trained ones (trained rows keep their
numbers).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy

from mmgraph.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from mmgraph.gnn.runs.run import ModelRun

FRESH = "fresh.safetensors"


class FreshNodesError(InvalidArgumentError):
    """Nodes to append that do not fit the run (an unknown node type or space, ragged rows)."""


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


def merge(base: dict[str, np.ndarray], fresh: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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
