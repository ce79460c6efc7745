"""How much memory a full-batch training step takes, estimated before running one, and the
choice it drives: full-batch when that fits the memory budget, else mini-batches of a size that
does (``MMGRAPH_TRAIN_MEMORY``, :attr:`mmgraph.core.config.Settings.train_memory`).

The estimate measures rather than models: the training step (forward pass and loss) runs on two
small stand-ins of the epoch's graph, the same schema and features with every node and edge
count scaled by ``p`` and ``2p`` (random edges: the memory of a step depends on the sizes, not
on who links to whom), while a saved-tensor hook adds up the activations autograd keeps for the
backward pass (for a model that recomputes its layers in the backward pass, measured both ways:
see :meth:`Activations.recomputing`). The line through the two is extrapolated to the whole
graph, and the peak is taken as the tensors resident anyway (features, edges), the epoch's
copies of the edges, and the activations with :data:`BACKWARD_FACTOR` for the gradients and
temporaries of the backward pass. Any model is estimated the same way, with its own options.
The budget bounds the training process's peak resident memory, so the plan also counts what the
process holds beyond the split's tensors when it plans (the interpreter, torch and the other
libraries, the allocator's free heap: about 1.1-1.4 GB on the CPU), measured, not assumed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psutil
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mmgraph.gnn.split import EdgeType, LinkSplit

# Peak of a step over the activations autograd keeps (gradients of activations, temporaries).
BACKWARD_FACTOR = 1.6
# Bytes per message-passing edge per epoch outside the model: the epoch's edge indices, their
# reverses, the homogeneous copy and the sorted or compressed copies the layers build.
EDGE_OVERHEAD = 96
# The larger stand-in has at most this many nodes (the smaller half as many).
PROBE_NODES = 20_000


@dataclass(frozen=True)
class Plan:
    """Full-batch or mini-batches, and why: the estimated full-batch peak against the budget
    (bytes, ``process_bytes`` of it held by the process before training), and for mini-batches
    the batch size and its estimated peak. ``recompute_layers``: whether a model that can
    rebuild its layers in the backward pass does (``False`` when keeping them fits the
    budget), or ``None`` to leave the model as it is set."""

    mode: str
    budget: int
    full_batch_bytes: int
    batch_size: int | None = None
    batch_bytes: int | None = None
    process_bytes: int = 0
    recompute_layers: bool | None = None


Step = Callable[[HeteroData, dict[EdgeType, Tensor]], Tensor]


@dataclass(frozen=True)
class Activations:
    """Bytes autograd keeps for a step on the epoch's graph scaled by ``s`` (nodes and edges
    alike): ``intercept + slope * s``, measured on two stand-ins (see the module)."""

    intercept: float
    slope: float

    @classmethod
    def measure(
        cls,
        split: LinkSplit,
        graph: HeteroData,
        step: Step,
        parameters: Iterable[Tensor],
        loss_chunk: int,
    ) -> Activations:
        """Measured for ``step``, whose loss keeps at most ``loss_chunk`` positives' tensors at
        once (per supervised edge type)."""
        nodes = sum(int(graph[t].num_nodes or 0) for t in graph.node_types)
        probe = min(0.5, PROBE_NODES / max(nodes, 1))
        excluded = [*parameters, *_tensors(graph)]
        small, large = (
            _saved_bytes(split, graph, step, f, excluded, loss_chunk) for f in (probe / 2, probe)
        )
        slope = max(large - small, 0) / (probe / 2)
        return cls(max(small - slope * probe / 2, 0.0), slope)

    def recomputing(self, whole: Activations, layers: int) -> Activations:
        """The activations of a step that keeps these (``self``: measured with its layers'
        activations recomputed in the backward pass) and rebuilds the rest of ``whole``
        (measured with them kept) one layer at a time: at most a ``layers``-th of the rest
        at once."""
        return Activations(
            self.intercept + max(whole.intercept - self.intercept, 0.0) / layers,
            self.slope + max(whole.slope - self.slope, 0.0) / layers,
        )

    def peak(self, scale: float) -> int:
        """Peak bytes of the step at ``scale``, with :data:`BACKWARD_FACTOR`."""
        return int(BACKWARD_FACTOR * (self.intercept + self.slope * scale))


def full_batch_bytes(
    split: LinkSplit, graph: HeteroData, activations: Activations, process: int = 0
) -> int:
    """The estimated peak of a full-batch step on ``graph``: the ``process``'s own holding,
    what stays in memory whatever the mode, and the step's activations at full scale."""
    return process + epoch_bytes(split, graph) + activations.peak(1.0)


def process_bytes(split: LinkSplit, device: torch.device) -> int:
    """What the training process holds now beyond ``split``'s tensors, on ``device``: on the
    CPU its resident memory less those tensors; on a GPU what torch has reserved there."""
    if device.type == "cuda":
        return torch.cuda.memory_reserved(device)
    return max(psutil.Process().memory_info().rss - resident_bytes(split), 0)


def epoch_bytes(split: LinkSplit, graph: HeteroData) -> int:
    """Bytes held whatever the mode: the split's tensors and the epoch's copies of its edges."""
    edges = sum(graph[et].edge_index.size(1) for et in graph.edge_types)
    return resident_bytes(split) + EDGE_OVERHEAD * edges


def plan(
    split: LinkSplit,
    graph: HeteroData,
    activations: Activations,
    budget: int,
    batch_cost: Callable[[int], tuple[float, int]],
    batch_sizes: Sequence[int],
    process: int = 0,
) -> Plan:
    """Full-batch when its estimated peak fits ``budget``; else the largest of
    ``batch_sizes`` (ascending) whose batches fit, ``batch_cost(size)`` giving the share of the
    graph one batch's sampled neighbourhood covers and the peak bytes of a step on it (the
    smallest size when none fits). ``process``: bytes the process holds beyond the split
    (:func:`process_bytes`)."""
    fixed = process + epoch_bytes(split, graph)
    features = sum(_nbytes(v) for t in graph.node_types for v in graph[t].values())
    full = full_batch_bytes(split, graph, activations, process)
    if full <= budget:
        return Plan("full", budget, full, process_bytes=process)
    chosen, chosen_bytes = batch_sizes[0], None
    for size in batch_sizes:
        scale, step = batch_cost(size)
        need = fixed + step + int(scale * features)  # the batch's copies
        if chosen_bytes is not None and need > budget:
            break
        chosen, chosen_bytes = size, need
        if need > budget or scale >= 0.5:  # beyond, batches are the whole graph again
            break
    return Plan("mini", budget, full, chosen, chosen_bytes, process)


def resident_bytes(split: LinkSplit) -> int:
    """Bytes of the split's tensors: features, masks, edges, held-out candidates."""
    total = sum(_nbytes(v) for store in split.base.stores for v in store.values())
    total += sum(_nbytes(e) for e in split.train_edges.values())
    for held in (*split.val.values(), *split.test.values()):
        total += _nbytes(held.edge_index) + _nbytes(held.negatives)
    return total


def _nbytes(value: object) -> int:
    return value.numel() * value.element_size() if isinstance(value, Tensor) else 0


def _saved_bytes(
    split: LinkSplit,
    graph: HeteroData,
    step: Step,
    fraction: float,
    excluded: list[Tensor],
    loss_chunk: int,
) -> int:
    """Bytes of the distinct storages autograd saves during ``step`` on a stand-in of
    ``graph`` at ``fraction`` of its size, ``excluded`` tensors' storages not counted."""
    generator = torch.Generator().manual_seed(0)
    stand_in = _stand_in(graph, fraction, generator)
    # The loss runs in chunks of ``loss_chunk`` positives, so at full scale it keeps at most one
    # chunk's tensors at a time: both stand-ins get that many positives (or all there are), the
    # same count, so the loss lands in the line's intercept instead of growing with its slope.
    supervision = {
        et: _random_edges(
            min(math.ceil(e.size(1) * split.config.supervision_ratio), loss_chunk),
            stand_in[et[0]].num_nodes,
            stand_in[et[2]].num_nodes,
            generator,
        ).to(_device(graph))
        for et, e in split.train_edges.items()
    }
    return saved_bytes(lambda: step(stand_in, supervision), excluded)


def saved_bytes(run: Callable[[], object], excluded: Iterable[Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for the backward pass while ``run``
    runs (a training step's forward and loss), ``excluded`` tensors' storages not counted."""
    seen = {_storage(t) for t in excluded}
    total = 0
    # What autograd would keep, kept here until the step is over (so that no storage's address
    # is reused and counted twice), not in the graph: a pack hook that returned the tensor made a
    # cycle through autograd's C++ graph (an output saved by its own node) that Python's
    # collector cannot see, and the stand-ins' loss tensors (0.9 GB for HGT at 100k) stayed
    # alive through the whole training. The step is never run backwards.
    kept = []

    def pack(tensor: Tensor) -> None:
        nonlocal total
        kept.append(tensor)
        for part in _parts(tensor):
            if _storage(part) not in seen:
                seen.add(_storage(part))
                total += part.untyped_storage().nbytes()

    with torch.autograd.graph.saved_tensors_hooks(pack, _never_unpacked):
        run()
    kept.clear()
    return total


def _never_unpacked(_: None) -> Tensor:
    raise AssertionError("the measured step is never run backwards")


def _stand_in(graph: HeteroData, fraction: float, generator: torch.Generator) -> HeteroData:
    """``graph``'s schema with ``fraction`` of each type's nodes (their feature rows are
    views) and of each edge type's edges, drawn at random among them."""
    out = copy.copy(graph)
    counts = {}
    for node_type in graph.node_types:
        n = int(graph[node_type].num_nodes or 0)
        counts[node_type] = max(1, math.ceil(fraction * n)) if n else 0
        for key, value in graph[node_type].items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == n:
                out[node_type][key] = value[: counts[node_type]]
        out[node_type].num_nodes = counts[node_type]
    for src, rel, dst in graph.edge_types:
        m = math.ceil(fraction * graph[src, rel, dst].edge_index.size(1))
        edges = _random_edges(m, counts[src], counts[dst], generator)
        out[src, rel, dst].edge_index = edges.to(_device(graph))
    return out


def _device(graph: HeteroData) -> torch.device:
    """Where ``graph``'s tensors are (its stand-ins' edges go there too)."""
    tensors = _tensors(graph)
    return tensors[0].device if tensors else torch.device("cpu")


def _random_edges(m: int, n_src: int, n_dst: int, generator: torch.Generator) -> Tensor:
    if not n_src or not n_dst:
        return torch.empty(2, 0, dtype=torch.long)
    return torch.stack(
        [
            torch.randint(0, n_src, (m,), generator=generator),
            torch.randint(0, n_dst, (m,), generator=generator),
        ]
    )


def _tensors(graph: HeteroData) -> list[Tensor]:
    return [v for store in graph.stores for v in store.values() if isinstance(v, Tensor)]


def _parts(tensor: Tensor) -> list[Tensor]:
    """A tensor's dense storages (a sparse tensor's index and value arrays)."""
    if tensor.layout == torch.sparse_csr:
        return [tensor.crow_indices(), tensor.col_indices(), tensor.values()]
    if tensor.is_sparse:
        return [tensor._indices(), tensor._values()]
    return [tensor]


def _storage(tensor: Tensor) -> int:
    return tensor.untyped_storage().data_ptr()
