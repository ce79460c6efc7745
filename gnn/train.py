"""Self-supervised link-prediction training of an embedding model on a :class:`LinkSplit`.

Each epoch passes messages over one draw of the train edges and is supervised by the rest
(:meth:`LinkSplit.train_graph`), each positive ranked by softmax cross-entropy against uniformly
sampled negatives of the destination type, one draw shared by each group of positives (or
binary cross-entropy), plus the model's auxiliary loss (e.g. MGAT's cross-modal InfoNCE); the
loss runs in chunks of positives, so its memory does not grow with the supervision.
Validation MRR against the split's fixed candidates drives early stopping; the best epoch's
weights are kept. Full-batch when its estimated peak fits the memory budget
(:mod:`mmgraph.gnn.budget`), else mini-batches of supervision edges over sampled neighbourhoods
(:mod:`mmgraph.gnn.sampler`, through PyG's ``LinkLoader``), validated on the nodes the
validation edges need and no more often than an epoch's cost allows. Under ``torch.distributed``
each rank trains on its shard of the supervision edges (:mod:`mmgraph.gnn.distributed`).
The same code runs on CUDA when torch sees a GPU, else on the CPU; seeds fix every draw.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import BaseSampler, NegativeSampling

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn import distributed
from mmgraph.gnn.budget import (
    BACKWARD_FACTOR,
    Activations,
    Plan,
    full_batch_bytes,
    plan,
    process_bytes,
    saved_bytes,
)
from mmgraph.gnn.metrics import ranking_metrics
from mmgraph.gnn.models.base import EmbeddingModel, rows
from mmgraph.gnn.sampler import CSC, degree_capped, make_neighbor_sampler
from mmgraph.gnn.split import EdgeType, HeldOut, LinkSplit, check_no_leak

log = logging.getLogger(__name__)

# Candidate links scored at once in evaluation (bounds the gathered embeddings' memory).
SCORE_CHUNK = 262_144
# Positives per chunk of the loss (bounds its gathered embeddings and logits).
LOSS_CHUNK = 65_536
Measured = TypeVar("Measured")
# Mini-batch sizes the memory budget chooses among; and the batch size of sampled inference.
BATCH_SIZES = (1024, 2048, 4096, 8192, 16_384, 32_768, 65_536)
INFERENCE_BATCH = 4096
LOSSES = ("softmax", "bce")


class TrainConfigError(InvalidArgumentError):
    """A training setting out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, stopping, negatives, batching, memory, device and seed.

    Args:
        epochs: the most epochs to run.
        lr, weight_decay: Adam's.
        patience: epochs without a better validation MRR before stopping.
        negatives: sampled negatives per supervision edge.
        hard_negatives: extra negatives per supervision edge two hops from its true end in the
            epoch's message-passing graph (``d <- e -> t``: another end of a node linked to the
            true one), what the evaluation's hard candidates are; uniform where none exists.
        negatives_shared_by: how many supervision edges share one draw of negatives (each
            edge is still ranked against ``negatives`` of them). Sharing gathers each
            negative's embedding once per group instead of once per edge, so the loss's memory
            falls by about that factor and more negatives become affordable; 1 = own draw each.
        loss: ``"softmax"`` (each positive against its negatives, cross-entropy: a sampled
            ranking loss) or ``"bce"`` (binary cross-entropy per link).
        batch_size: supervision edges per mini-batch; ``None`` lets the memory budget choose:
            full-batch when its estimated peak fits, else the largest batch size that does.
        num_neighbors: neighbours sampled per hop in mini-batch mode, for every edge type, at
            most the median in-degree of the type's nodes that have any (so a hub samples no
            more than a typical node has: hubs do not make neighbourhoods explode).
        fanouts: per relation name (``"HAS_TAG"``, ``"rev_HAS_TAG"``), neighbours sampled per
            hop instead of ``num_neighbors``: e.g. few on the edges into hub nodes.
        memory_budget: bytes training may use; ``None``: ``MMGRAPH_TRAIN_MEMORY`` (default
            8 GB). Ranks on one machine share it.
        max_seconds: stop after this much training time (a bound for demos), or ``None``.
        device: ``"cpu"``/``"cuda"``; default CUDA when torch sees one.
        seed: seeds parameters, epoch draws and negatives.
    """

    epochs: int = 200
    lr: float = 0.005
    weight_decay: float = 0.0
    patience: int = 50
    negatives: int = 128
    hard_negatives: int = 0
    negatives_shared_by: int = 128
    loss: str = "softmax"
    batch_size: int | None = None
    num_neighbors: tuple[int, ...] = (10, 10)
    fanouts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    memory_budget: int | None = None
    max_seconds: float | None = None
    device: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "negatives", "negatives_shared_by"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.hard_negatives < 0:
            raise TrainConfigError(f"hard_negatives must be at least 0, got {self.hard_negatives}")
        if self.loss not in LOSSES:
            raise TrainConfigError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.lr <= 0:
            raise TrainConfigError(f"lr must be positive, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise TrainConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.memory_budget is not None and self.memory_budget < 1:
            raise TrainConfigError(f"memory_budget must be positive, got {self.memory_budget}")
        hops = {len(self.num_neighbors), *(len(f) for f in self.fanouts.values())}
        if len(hops) > 1:
            raise TrainConfigError(
                f"fanouts must give as many hops as num_neighbors ({len(self.num_neighbors)}), "
                f"got {dict(self.fanouts)}"
            )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class TrainResult:
    """What training did: the best epoch, its validation MRR, the curve, time and mode (with
    the estimated full-batch peak and the budget that chose it, in bytes, and whether the
    model's layers were rebuilt in the backward pass)."""

    best_epoch: int
    best_val_mrr: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    mode: str = "full"
    device: str = "cpu"
    batch_size: int | None = None
    full_batch_bytes: int | None = None
    memory_budget: int | None = None
    recompute_layers: bool = False


class Objective(torch.nn.Module):
    """A training step's loss as one module: the model's embeddings, the link loss of the
    supervision edges and the model's auxiliary loss. DistributedDataParallel wraps this
    module, so every parameter the step uses (the decoder's too) is reached from its forward."""

    def __init__(self, model: EmbeddingModel, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(
        self,
        graph: HeteroData,
        supervision: dict[EdgeType, torch.Tensor],
        generator: torch.Generator,
        candidates: dict[EdgeType, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        z = self.model(graph)
        candidates = candidates or {}
        loss = sum(
            link_loss(
                self.model,
                z,
                et,
                pos,
                self.config,
                generator,
                graph[et].edge_index,
                candidates.get(et),
            )
            for et, pos in supervision.items()
        )
        aux = self.model.auxiliary_loss(graph, z)
        return loss if aux is None else loss + aux


def train_model(
    model: EmbeddingModel,
    split: LinkSplit,
    config: TrainConfig | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``split``; leaves the best epoch's weights in it (in eval mode).
    Under ``torch.distributed``, every rank calls this with the same split and config and
    leaves with rank 0's best weights and result (see :mod:`mmgraph.gnn.distributed`)."""
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    device = distributed.resolve_device(config.device)
    model.reset_parameters()
    model.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    val_graph = split.graph("val")
    check_no_leak(split, [val_graph])
    objective = Objective(model, config)
    chosen = distributed.from_rank0(
        plan_training(objective, split, config, device) if distributed.rank() == 0 else None
    )
    mini = chosen.mode == "mini"
    log.info(
        "%s-batch training (%sestimated full-batch peak %.1f GB, budget %.1f GB%s)",
        chosen.mode,
        f"batches of {chosen.batch_size:,} supervision edges; " if mini else "",
        chosen.full_batch_bytes / 1e9,
        chosen.budget / 1e9,
        ", layers kept, not rebuilt" if chosen.recompute_layers is False else "",
    )
    step = distributed.wrap(objective, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = TrainResult(
        -1,
        -1.0,
        mode=chosen.mode,
        device=str(device),
        batch_size=chosen.batch_size,
        full_batch_bytes=chosen.full_batch_bytes,
        memory_budget=chosen.budget,
        recompute_layers=model.recompute_layers and chosen.recompute_layers is not False,
    )
    user_choice = model.recompute_layers
    if chosen.recompute_layers is not None:
        model.recompute_layers = chosen.recompute_layers
    try:
        tracker = _Tracker(model, split, val_graph, config, device, result, progress, mini)
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            if mini:
                loss = _mini_batch_epoch(step, split, optimizer, generator, config, device, chosen)
            else:
                loss = _full_batch_epoch(step, split, optimizer, generator, device)
            stop = distributed.rank() == 0 and tracker.after_epoch(epoch, loss, t0)
            if distributed.from_rank0(stop):
                break
    finally:
        model.recompute_layers = user_choice
    best_state, result = distributed.from_rank0((tracker.best_state, result))
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - tracker.started
    return result


class _Tracker:
    """Rank 0's side of the epoch loop: validates (every epoch, or in mini-batch mode every
    few, so that validating costs no more than training), keeps the best epoch's weights,
    records the curve and says when to stop (patience, or ``max_seconds``)."""

    def __init__(
        self,
        model: EmbeddingModel,
        split: LinkSplit,
        val_graph: HeteroData,
        config: TrainConfig,
        device: torch.device,
        result: TrainResult,
        progress: Callable[[int, dict[str, float]], None] | None,
        mini: bool,
    ) -> None:
        self.model, self.split, self.val_graph = model, split, val_graph
        self.config, self.device, self.result = config, device, result
        self.progress, self.mini = progress, mini
        self.best_state = _cpu_state(model)
        self.started = time.perf_counter()
        self.every, self.val = 1, -1.0

    def after_epoch(self, epoch: int, loss: float, t0: float) -> bool:
        """Record the epoch that began at ``t0``; whether training should stop."""
        train_s = time.perf_counter() - t0
        if (epoch - 1) % self.every == 0:
            self._validate(epoch, train_s)
        row = {
            "epoch": epoch,
            "loss": loss,
            "val_mrr": self.val,
            "seconds": time.perf_counter() - t0,
            "train_seconds": train_s,
        }
        self.result.history.append(row)
        if self.progress is not None:
            self.progress(epoch, row)
        limit = self.config.max_seconds
        if limit is not None and time.perf_counter() - self.started > limit:
            log.info("stopping after %d epochs: max_seconds %.0f reached", epoch, limit)
            return True
        return epoch - self.result.best_epoch >= self.config.patience

    def _validate(self, epoch: int, train_s: float) -> None:
        t1 = time.perf_counter()
        self.val = validation_mrr(
            self.model, self.split, self.val_graph, self.device, self.config if self.mini else None
        )
        if self.mini and epoch == 1:
            self.every = _validation_interval(time.perf_counter() - t1, train_s)
        if self.val > self.result.best_val_mrr:
            self.result.best_epoch, self.result.best_val_mrr = epoch, self.val
            self.best_state = _cpu_state(self.model)


def plan_training(
    objective: Objective, split: LinkSplit, config: TrainConfig, device: torch.device
) -> Plan:
    """Full-batch or mini-batches (and their size) for ``config`` on ``split``: what the
    user asked (``batch_size``), else what the memory budget allows (:mod:`mmgraph.gnn.budget`).
    Draws nothing from the training's random streams."""
    budget = config.memory_budget or Settings.from_env().train_memory
    budget //= distributed.local_world_size()
    process = process_bytes(split, device)
    with torch.random.fork_rng(devices=[]):
        graph, supervision = split.train_graph(torch.Generator().manual_seed(config.seed))
        graph = graph.to(device)
        objective.train()
        activations, kept_all = _activations(objective, split, graph)
        if config.batch_size is not None:
            full = full_batch_bytes(split, graph, activations, process)
            return Plan("mini", budget, full, config.batch_size, process_bytes=process)
        if kept_all is not None:
            # Rebuilding the layers costs time (about a sixth of an epoch); it is for a budget
            # that cannot hold what they keep.
            full = full_batch_bytes(split, graph, kept_all, process)
            if full <= budget:
                return Plan("full", budget, full, process_bytes=process, recompute_layers=False)
        n_sup = max(pos.size(1) for pos in supervision.values())
        sizes = [b for b in BATCH_SIZES if b < n_sup] or [n_sup]
        sampler = make_neighbor_sampler(graph, neighbours(graph, config), seed=config.seed)
        return plan(
            split,
            graph,
            activations,
            budget,
            _BatchCost(objective, graph, supervision, sampler),
            sizes,
            process,
        )


def step_activations(
    objective: Objective, split: LinkSplit, graph: HeteroData, loss_chunk: int = LOSS_CHUNK
) -> Activations:
    """What a step of ``objective`` on stand-ins of ``graph`` keeps for its backward pass, as
    the model is set now (:meth:`mmgraph.gnn.budget.Activations.measure`)."""
    return Activations.measure(
        split,
        graph,
        lambda g, sup: objective(g, sup, torch.Generator().manual_seed(0)),
        objective.parameters(),
        loss_chunk,
    )


def _activations(
    objective: Objective, split: LinkSplit, graph: HeteroData
) -> tuple[Activations, Activations | None]:
    """What a step of ``objective`` keeps for its backward pass (:mod:`mmgraph.gnn.budget`),
    with the layers a model recomputes counted one layer at a time; and for such a model, what
    the step keeps with its layers kept instead (``None`` for another model)."""
    model = objective.model
    kept, whole = _both_ways(model, lambda: step_activations(objective, split, graph))
    if whole is None:
        return kept, None
    return kept.recomputing(whole, model.num_layers), whole


def _both_ways(
    model: EmbeddingModel, measure: Callable[[], Measured]
) -> tuple[Measured, Measured | None]:
    """``measure()`` as the model is set, and for a model that recomputes its layers in the
    backward pass, again with everything kept (``None`` otherwise)."""
    kept = measure()
    if not model.recompute_layers:
        return kept, None
    model.recompute_layers = False
    try:
        return kept, measure()
    finally:
        model.recompute_layers = True


@dataclass
class _BatchCost:
    """What a mini-batch of ``size`` supervision edges costs: the largest share of ``graph``'s
    nodes or edges one batch reaches (one batch drawn per edge type), and the peak bytes of a
    training step on it. The step is measured on a real batch of the first size asked (what
    autograd keeps, as for the full-batch estimate, rebuilt layers counted one at a time) and
    scaled by the share for larger sizes: stand-ins of the whole graph cannot tell how little
    a trimmed batch's later layers keep, and measuring each size would itself peak above the
    budget before the plan knew."""

    objective: Objective
    graph: HeteroData
    supervision: dict[EdgeType, torch.Tensor]
    sampler: BaseSampler
    measured: tuple[float, int] | None = None

    def __call__(self, size: int) -> tuple[float, int]:
        graph = self.graph
        nodes = sum(int(graph[t].num_nodes or 0) for t in graph.node_types)
        edges = sum(graph[et].edge_index.size(1) for et in graph.edge_types)
        share, peak = 0.0, 0
        for edge_type, pos in self.supervision.items():
            batch = next(iter(_link_loader(graph, self.sampler, edge_type, pos, size)))
            reached = sum(int(batch[t].num_nodes or 0) for t in batch.node_types)
            sampled = sum(batch[et].edge_index.size(1) for et in batch.edge_types)
            share = max(share, reached / max(nodes, 1), sampled / max(edges, 1))
            if self.measured is None:
                peak = max(peak, self._step_peak(batch, edge_type))
        if self.measured is None:
            self.measured = (share, peak)
        first_share, first_peak = self.measured
        return share, int(first_peak * share / max(first_share, 1e-12))

    def _step_peak(self, batch: HeteroData, edge_type: EdgeType) -> int:
        objective, model = self.objective, self.objective.model
        label_index, negatives = _batch_targets(batch, edge_type)
        excluded = [
            *objective.parameters(),
            *(v for store in batch.stores for v in store.values() if isinstance(v, torch.Tensor)),
        ]

        def run() -> None:
            objective(batch, label_index, torch.Generator().manual_seed(0), negatives)

        kept, whole = _both_ways(model, lambda: saved_bytes(run, excluded))
        if whole is not None:
            kept += max(whole - kept, 0) // model.num_layers
        return int(BACKWARD_FACTOR * kept)


def _batch_targets(
    batch: HeteroData, edge_type: EdgeType
) -> tuple[dict[EdgeType, torch.Tensor], dict[EdgeType, torch.Tensor]]:
    """A batch of :func:`_link_loader`'s positives (seed indices) and negative seeds."""
    src, dst = batch[edge_type[0]], batch[edge_type[2]]
    positives = torch.stack([src.src_index, dst.dst_pos_index])
    return {edge_type: positives}, {edge_type: dst.dst_neg_index.reshape(-1)}


def neighbours(graph: HeteroData, config: TrainConfig) -> dict[EdgeType, list[int]]:
    """Neighbours sampled per hop for each edge type of ``graph``: ``config.fanouts`` for the
    relations it names, ``config.num_neighbors`` capped at the edge type's typical in-degree
    for the others (:func:`~mmgraph.gnn.sampler.degree_capped`)."""
    capped = degree_capped(graph, list(config.num_neighbors))
    return {
        et: list(config.fanouts[et[1]]) if et[1] in config.fanouts else capped[et]
        for et in graph.edge_types
    }


def _validation_interval(validation_s: float, epoch_s: float) -> int:
    """Epochs between validations so that validating costs no more than training."""
    return max(1, math.ceil(validation_s / max(epoch_s, 1e-9)))


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _full_batch_epoch(
    step: torch.nn.Module,
    split: LinkSplit,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    step.train()
    graph, supervision = split.train_graph(generator)
    supervision = {et: distributed.shard(pos).to(device) for et, pos in supervision.items()}
    return _step(step, optimizer, graph.to(device), supervision, generator)


def _mini_batch_epoch(
    step: torch.nn.Module,
    split: LinkSplit,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    config: TrainConfig,
    device: torch.device,
    chosen: Plan,
) -> float:
    """One pass over this epoch's supervision edges (this rank's shard) in batches over
    sampled neighbourhoods."""
    step.train()
    graph, supervision = split.train_graph(generator)
    sampler = make_neighbor_sampler(
        graph,
        neighbours(graph, config),
        seed=int(torch.randint(0, 2**31, (1,), generator=generator)),
    )
    total, batches = 0.0, 0
    for edge_type, pos in supervision.items():
        shard = distributed.shard(pos)
        for batch in _link_loader(graph, sampler, edge_type, shard, chosen.batch_size, True):
            batch = batch.to(device)
            label_index, negatives = _batch_targets(batch, edge_type)
            total += _step(step, optimizer, batch, label_index, generator, negatives)
            batches += 1
    return total / max(batches, 1)


def _link_loader(
    graph: HeteroData,
    sampler: BaseSampler,
    edge_type: EdgeType,
    pos: torch.Tensor,
    batch_size: int | None,
    shuffle: bool = False,
) -> LinkLoader:
    """Batches of ``pos`` with one uniformly drawn destination per positive among the seeds
    (PyG's triplet sampling): the loss draws its negatives from those, which are embedded from
    their own sampled neighbourhoods as the positives are, and as uniform as full-batch
    training's (the other nodes of a batch are only its seeds' neighbours)."""
    return LinkLoader(
        graph,
        link_sampler=sampler,
        edge_label_index=(edge_type, pos),
        batch_size=batch_size or INFERENCE_BATCH,
        neg_sampling=NegativeSampling("triplet", amount=1),
        shuffle=shuffle,
    )


def _step(
    step: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    graph: HeteroData,
    supervision: dict[EdgeType, torch.Tensor],
    generator: torch.Generator,
    candidates: dict[EdgeType, torch.Tensor] | None = None,
) -> float:
    """One optimiser step on the loss of :class:`Objective` (possibly in DDP)."""
    optimizer.zero_grad()
    loss = step(graph, supervision, generator, candidates)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def link_loss(
    model: EmbeddingModel,
    z: dict[str, torch.Tensor],
    edge_type: EdgeType,
    pos: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    mp_edges: torch.Tensor,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss of positives against ``config.negatives`` uniformly drawn destinations each
    (among ``candidates``, rows of ``z[dst]``, when given: a mini-batch's negative seeds),
    one draw per group of ``config.negatives_shared_by`` positives, and ``config.hard_negatives``
    of their own two hops away in ``mp_edges`` (this edge type's message-passing edges):
    softmax cross-entropy of each positive among its negatives (a sampled ranking loss, what
    MRR measures), or binary cross-entropy of every link on its own. Computed in chunks of
    about :data:`LOSS_CHUNK` positives, so that only one chunk's gathered embeddings and logits
    exist at a time (:class:`_ChunkedLoss`)."""
    n_pos, group, k = pos.size(1), config.negatives_shared_by, config.negatives
    groups = -(-n_pos // group)
    # The last group is padded with the first source; its padded rows are dropped below.
    src = torch.cat([pos[0], pos[0, :1].expand(groups * group - n_pos)]).view(groups, group)
    n_dst = z[edge_type[2]].size(0)
    if candidates is None:
        dst = torch.randint(0, n_dst, (groups, k), generator=generator).to(pos.device)
    else:
        drawn = torch.randint(0, candidates.numel(), (groups, k), generator=generator)
        dst = rows(candidates, drawn.to(candidates.device))
    hard = None
    if config.hard_negatives:
        # A sampled batch's model may embed its seeds alone: ends beyond them are unknown.
        mp_edges = mp_edges[:, mp_edges[1] < n_dst]
        hard = _two_hop_negatives(pos, mp_edges, n_dst, config.hard_negatives, generator)
    per_chunk = max(1, LOSS_CHUNK // group)
    chunks = []
    for g0 in range(0, groups, per_chunk):
        g1 = min(g0 + per_chunk, groups)
        p0, p1 = g0 * group, min(g1 * group, n_pos)
        chunks.append(
            (src[g0:g1], dst[g0:g1], pos[:, p0:p1], None if hard is None else hard[p0:p1])
        )

    n_neg = k + config.hard_negatives

    def mean(pos_sum: torch.Tensor, neg_sum: torch.Tensor) -> torch.Tensor:
        if config.loss == "softmax":
            return pos_sum / n_pos
        return pos_sum / n_pos + neg_sum / (n_pos * n_neg)

    if len(chunks) > 1 and torch.is_grad_enabled():
        types = tuple(dict.fromkeys((edge_type[0], edge_type[2])))
        params = [p for p in model.parameters() if p.requires_grad]

        def run(z: dict[str, torch.Tensor], *chunk: torch.Tensor | None) -> torch.Tensor:
            return mean(*_loss_sums(model, z, edge_type, config, *chunk))

        return _ChunkedLoss.apply(run, edge_type, chunks, types, *(z[t] for t in types), *params)
    parts = [_loss_sums(model, z, edge_type, config, *chunk) for chunk in chunks]
    return mean(sum(p[0] for p in parts), sum(p[1] for p in parts))


# Sources, candidates and positives of one chunk of the loss, and its hard negatives or None.
LossChunk = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


def _gathered(edge_type: EdgeType, chunk: LossChunk) -> tuple[dict[str, torch.Tensor], LossChunk]:
    """The rows of each node type one chunk of the loss (sources, candidates, positives' ends,
    hard negatives) reads, as one index per type, and the chunk's indices renumbered into them.
    The positives' sources are the groups' sources (the last group padded), read once."""
    src, dst, pos, hard = chunk
    s, d = edge_type[0], edge_type[2]
    pieces = [(s, src), (d, dst), (d, pos[1])]
    if hard is not None:
        pieces.append((d, hard))
    index: dict[str, list[torch.Tensor]] = {}
    local, taken = [], {}
    for node_type, piece in pieces:
        start = taken.get(node_type, 0)
        renumbered = torch.arange(start, start + piece.numel(), device=piece.device)
        local.append(renumbered.view(piece.shape))
        taken[node_type] = start + piece.numel()
        index.setdefault(node_type, []).append(piece.reshape(-1))
    src_l, dst_l, pos1, *hard_l = local
    pos0 = src_l.reshape(-1)[: pos.size(1)]
    return (
        {t: torch.cat(parts) for t, parts in index.items()},
        (src_l, dst_l, torch.stack([pos0, pos1]), hard_l[0] if hard_l else None),
    )


class _ChunkedLoss(torch.autograd.Function):
    """The loss of :func:`link_loss` summed over its chunks, each chunk computed on copies of
    the rows of ``z`` it reads, one chunk at a time. Each chunk's gradients are taken as soon
    as its loss is (as fused cross-entropy kernels do), so no chunk is rebuilt: the rows'
    gradients go into one gradient per node type, and the backward pass only scales them.
    Autograd's own gather backward would zero a whole node type's gradient for every gather of
    every chunk (at a million nodes, 72 such 0.5 GB tensors a step, 3.2 s of 25)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        run: Callable[..., torch.Tensor],
        edge_type: EdgeType,
        chunks: list[LossChunk],
        types: tuple[str, ...],
        *inputs: torch.Tensor,
    ) -> torch.Tensor:
        z = dict(zip(types, inputs, strict=False))
        wanted = dict(zip(types, ctx.needs_input_grad[4:], strict=False))
        params = inputs[len(types) :]
        wanted_params = [
            p for p, w in zip(params, ctx.needs_input_grad[4 + len(types) :], strict=True) if w
        ]
        z_grads = {t: torch.zeros_like(x) if wanted[t] else None for t, x in z.items()}
        param_grads: dict[torch.Tensor, torch.Tensor] = {}
        total = inputs[0].new_zeros(())
        for chunk in chunks:
            index, args = _gathered(edge_type, chunk)
            leaves = {
                t: z[t].detach().index_select(0, i).requires_grad_(wanted[t])
                for t, i in index.items()
            }
            needed = [*(x for x in leaves.values() if x.requires_grad), *wanted_params]
            # The chunk's own graph is used up here: hooks on what a step saves (the memory
            # budget's count) must not see it.
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_same, _same):
                loss = run(leaves, *args)
                # A chunk whose loss reads nothing trained (a frozen decoder) has no gradient.
                grads = (
                    torch.autograd.grad(loss, needed, allow_unused=True)
                    if needed and loss.requires_grad
                    else [None] * len(needed)
                )
            total += loss.detach()
            found = iter(grads)
            for t, x in leaves.items():
                g = next(found) if x.requires_grad else None
                if g is not None:
                    z_grads[t].index_add_(0, index[t], g)
            for p, g in zip(wanted_params, found, strict=True):
                if g is not None:  # own buffers, which the backward pass scales in place
                    param_grads[p] = g.clone() if p not in param_grads else param_grads[p].add_(g)
        # Saved as what the step keeps for the backward pass (the memory budget counts them
        # where its measured step runs the loss in chunks).
        ctx.save_for_backward(*(z_grads[t] for t in types), *(param_grads.get(p) for p in params))
        return total

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        # Scaled in place: the loss can be run backwards once (as the training step does).
        return (None,) * 4 + tuple(None if g is None else g.mul_(grad) for g in ctx.saved_tensors)


def _same(tensor: torch.Tensor) -> torch.Tensor:
    """A saved-tensor hook that keeps the tensor as it is."""
    return tensor


def _loss_sums(
    model: EmbeddingModel,
    z: dict[str, torch.Tensor],
    edge_type: EdgeType,
    config: TrainConfig,
    src: torch.Tensor,
    dst: torch.Tensor,
    pos: torch.Tensor,
    hard: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of :func:`link_loss`: summed cross-entropy of its positives (and ``0``), or
    the summed binary cross-entropy of its positives and of its negatives."""
    n_pos = pos.size(1)
    neg_logits = model.candidate_logits(z, edge_type, src, dst)
    neg_logits = neg_logits.reshape(-1, dst.size(1))[:n_pos]
    if hard is not None:
        hard_src = pos[0].repeat_interleave(hard.size(1))
        hard_logits = model.link_logits(z, edge_type, torch.stack([hard_src, hard.reshape(-1)]))
        neg_logits = torch.cat([neg_logits, hard_logits.view(n_pos, -1)], dim=1)
    pos_logits = model.link_logits(z, edge_type, pos)
    if config.loss == "softmax":
        logits = torch.cat([pos_logits.unsqueeze(1), neg_logits], dim=1)
        target = torch.zeros(n_pos, dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target, reduction="sum"), logits.new_zeros(())
    return (
        F.binary_cross_entropy_with_logits(
            pos_logits, torch.ones_like(pos_logits), reduction="sum"
        ),
        F.binary_cross_entropy_with_logits(
            neg_logits, torch.zeros_like(neg_logits), reduction="sum"
        ),
    )


def _two_hop_negatives(
    pos: torch.Tensor, mp_edges: torch.Tensor, n_dst: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """``(len(pos), count)`` ends two hops from each positive's true end ``d`` over
    ``mp_edges``: a random edge ``e -> d``, then a random other edge ``e -> t``. A uniform end
    where there is no such pair (``d`` has no incoming edge, or ``e`` no other edge)."""
    d = pos[1].cpu().repeat_interleave(count)
    uniform = torch.randint(0, n_dst, (d.numel(),), generator=generator)
    if mp_edges.size(1) == 0:
        return uniform.view(-1, count).to(pos.device)
    draw = torch.rand(2, d.numel(), generator=generator)
    into = CSC.build(mp_edges, n_dst)  # edges into each d: sources ``row``, ids ``perm``
    out_of = CSC.build(mp_edges.flip(0), int(mp_edges[0].max()) + 1)  # ends ``row``
    in_degree = into.colptr[d + 1] - into.colptr[d]
    first = into.colptr[d] + (draw[0] * in_degree).long().clamp(max=(in_degree - 1).clamp(min=0))
    first = first.clamp(max=into.row.numel() - 1)  # meaningless where in_degree is 0
    e, edge = into.row[first], into.perm[first]
    slot = torch.empty_like(out_of.perm)
    slot[out_of.perm] = torch.arange(out_of.perm.numel())
    others = out_of.colptr[e + 1] - out_of.colptr[e] - 1
    offset = (draw[1] * others).long().clamp(max=(others - 1).clamp(min=0))
    offset = offset + (offset >= slot[edge] - out_of.colptr[e]).long()  # skip the edge e -> d
    t = out_of.row[(out_of.colptr[e] + offset).clamp(max=out_of.row.numel() - 1)]
    found = (in_degree > 0) & (others > 0) & (t != d)
    return torch.where(found, t, uniform).view(-1, count).to(pos.device)


@torch.no_grad()
def embed(
    model: EmbeddingModel,
    graph: HeteroData,
    device: torch.device | None = None,
    config: TrainConfig | None = None,
    nodes: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The embeddings of ``nodes`` (node ids per type; default every node) in ``graph``, on
    the CPU: one pass over the whole graph, or, when ``config`` is given (mini-batch mode),
    batches over the sampled neighbourhoods of those nodes alone."""
    model.eval()
    device = device or next(iter(model.parameters()), torch.empty(0)).device
    if config is None:
        z = {t: v.cpu() for t, v in model(graph.to(device)).items()}
        return z if nodes is None else {t: z[t][ids] for t, ids in nodes.items()}
    sampler = make_neighbor_sampler(graph, neighbours(graph, config), seed=config.seed)
    if nodes is None:
        nodes = {
            t: torch.arange(graph[t].num_nodes) for t in graph.node_types if graph[t].num_nodes
        }
    out: dict[str, torch.Tensor] = {}
    for node_type, ids in nodes.items():
        loader = NodeLoader(
            graph,
            node_sampler=sampler,
            input_nodes=(node_type, ids),
            batch_size=config.batch_size or INFERENCE_BATCH,
        )
        parts = [
            model(batch.to(device))[node_type][: batch[node_type].batch_size].cpu()
            for batch in loader
        ]
        out[node_type] = torch.cat(parts) if parts else torch.empty(0, model.embedding_dim)
    return out


def validation_mrr(
    model: EmbeddingModel,
    split: LinkSplit,
    graph: HeteroData,
    device: torch.device,
    config: TrainConfig | None = None,
    stage: str = "val",
) -> float:
    """Mean MRR over the target edge types of the validation (or ``stage="test"``) edges
    against their candidates, ranked in ``graph``. In mini-batch mode (``config`` given) only
    the nodes those edges and candidates name are embedded, not the whole graph."""
    held_out = split.val if stage == "val" else split.test
    if config is None:
        z = embed(model, graph, device)
    else:
        nodes = _held_out_nodes(held_out)
        z = embed(model, graph, device, config, nodes)
        held_out = {et: _renumbered(held, et, nodes) for et, held in held_out.items()}
    scores = [
        ranking_metrics(*candidate_scores(model, z, edge_type, held))["mrr"]
        for edge_type, held in held_out.items()
    ]
    return float(np.mean(scores))


def _held_out_nodes(held_out: dict[EdgeType, HeldOut]) -> dict[str, torch.Tensor]:
    """Per node type, the sorted ids of the nodes ``held_out``'s edges and candidates name."""
    found: dict[str, list[torch.Tensor]] = {}
    for (src, _, dst), held in held_out.items():
        found.setdefault(src, []).append(held.edge_index[0])
        found.setdefault(dst, []).extend([held.edge_index[1], held.negatives.reshape(-1)])
    return {t: torch.unique(torch.cat(ids)) for t, ids in found.items()}


def _renumbered(held: HeldOut, edge_type: EdgeType, nodes: dict[str, torch.Tensor]) -> HeldOut:
    """``held`` with its node ids replaced by their positions in ``nodes``."""
    src, dst = nodes[edge_type[0]], nodes[edge_type[2]]
    edge_index = torch.stack(
        [torch.searchsorted(src, held.edge_index[0]), torch.searchsorted(dst, held.edge_index[1])]
    )
    return HeldOut(edge_index, torch.searchsorted(dst, held.negatives), held.hard)


@torch.no_grad()
def candidate_scores(
    model: EmbeddingModel, z: dict[str, torch.Tensor], edge_type: EdgeType, held: HeldOut
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of each held-out edge and of its row of candidate negatives (in chunks of rows,
    so memory stays bounded however many edges are held out)."""
    device = model.device
    z = {t: v.to(device) for t, v in z.items()}
    pos = model.link_logits(z, edge_type, held.edge_index.to(device)).float().cpu()
    n, k = held.negatives.shape
    rows = max(1, SCORE_CHUNK // max(k, 1))
    neg = torch.empty(n, k)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        src = held.edge_index[0, start:stop].repeat_interleave(k)
        index = torch.stack([src, held.negatives[start:stop].reshape(-1)]).to(device)
        neg[start:stop] = model.link_logits(z, edge_type, index).float().cpu().reshape(-1, k)
    return pos.numpy(), neg.numpy()
