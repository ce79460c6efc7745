"""Training under ``torch.distributed``: what :func:`mmgraph.gnn.train.train_model` does
differently when a process group is initialised (by :mod:`mmgraph.gnn.launch` or ``torchrun``).

The standard PyG multi-GPU recipe: every rank holds its own copy of the graph and draws the
same epoch graph (same seed), trains on its own shard of the supervision edges, and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients (gloo on the CPU,
NCCL on GPUs). Rank 0 alone validates and decides to stop; the decision, the plan and in the end
its best weights go to every rank by broadcast, so all ranks leave with rank 0's model.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


def active() -> bool:
    """Whether a process group is initialised (this process is one rank of several)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_world_size() -> int:
    """Ranks on this machine (they share its memory)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size())) if active() else 1


def resolve_device(device: str | None) -> torch.device:
    """``device`` if given, else CUDA when torch sees a GPU, else the CPU: where training runs,
    and so which backend a rank's process group uses (:func:`backend_for`)."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def backend_for(device: torch.device) -> str:
    """NCCL for GPUs, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def shard(edges: torch.Tensor) -> torch.Tensor:
    """This rank's share of supervision edges ``(2, n)``: every ``world_size``-th, and the same
    count on every rank (``n // world_size``) so that all ranks take as many steps."""
    if not active():
        return edges
    size = world_size()
    return edges[:, rank() :: size][:, : edges.size(1) // size]


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when distributed (parameters a step leaves unused,
    such as a branch for a modality no node lacks, are allowed), else itself."""
    if not active():
        return module
    if device.type != "cuda":
        return DistributedDataParallel(module, find_unused_parameters=True)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return DistributedDataParallel(module, device_ids=[index], find_unused_parameters=True)


def from_rank0(value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object); ``value`` itself alone."""
    if not active():
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
