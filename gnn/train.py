"""Self-supervised link-prediction training of an embedding model on a :class:`LinkSplit`.

Each epoch passes messages over one draw of the train edges and is supervised by the rest
(:meth:`LinkSplit.train_graph`), each positive ranked by softmax cross-entropy against uniformly
sampled negatives of the destination type, one draw shared by each group of positives (or
binary cross-entropy), plus the model's auxiliary loss (e.g. MGAT's cross-modal InfoNCE).
Validation MRR against the split's fixed candidates drives early stopping; the best epoch's
weights are kept. Full-batch when the graph is small enough, else mini-batches of supervision
edges over sampled neighbourhoods (:mod:`mmgraph.gnn.sampler`, through PyG's ``LinkLoader``).
The same code runs on CUDA when torch sees a GPU, else on the CPU; seeds fix every draw.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkLoader, NodeLoader

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn.metrics import ranking_metrics
from mmgraph.gnn.models.base import EmbeddingModel
from mmgraph.gnn.sampler import CSC, make_neighbor_sampler
from mmgraph.gnn.split import EdgeType, HeldOut, LinkSplit, check_no_leak

log = logging.getLogger(__name__)

# Above this many message-passing edges a full-batch epoch is not attempted (memory on CPU).
FULL_BATCH_MAX_EDGES = 2_000_000
# Candidate links scored at once in evaluation (bounds the gathered embeddings' memory).
SCORE_CHUNK = 262_144
LOSSES = ("softmax", "bce")


class TrainConfigError(InvalidArgumentError):
    """A training setting out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, stopping, negatives, batching, device and seed.

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
        batch_size: supervision edges per mini-batch; ``None`` chooses full-batch unless the
            graph has more than ``FULL_BATCH_MAX_EDGES`` message-passing edges.
        num_neighbors: neighbours sampled per hop and edge type in mini-batch mode.
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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class TrainResult:
    """What training did: the best epoch, its validation MRR, the curve, time and mode."""

    best_epoch: int
    best_val_mrr: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    mode: str = "full"
    device: str = "cpu"


def resolve_device(device: str | None) -> torch.device:
    """``device`` if given, else CUDA when torch sees a GPU, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def train_model(
    model: EmbeddingModel,
    split: LinkSplit,
    config: TrainConfig | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``split``; leaves the best epoch's weights in it (in eval mode)."""
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    model.reset_parameters()
    model.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    val_graph = split.graph("val")
    check_no_leak(split, [val_graph])
    mp_edges = sum(val_graph[et].edge_index.size(1) for et in val_graph.edge_types)
    mini = config.batch_size is not None or mp_edges > FULL_BATCH_MAX_EDGES
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    result = TrainResult(-1, -1.0, mode="mini" if mini else "full", device=str(device))
    best_state = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    epoch_fn = _mini_batch_epoch if mini else _full_batch_epoch
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        loss = epoch_fn(model, split, optimizer, generator, config, device)
        val = validation_mrr(model, split, val_graph, device, config if mini else None)
        row = {"epoch": epoch, "loss": loss, "val_mrr": val, "seconds": time.perf_counter() - t0}
        result.history.append(row)
        if progress is not None:
            progress(epoch, row)
        if val > result.best_val_mrr:
            result.best_epoch, result.best_val_mrr = epoch, val
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - result.best_epoch >= config.patience:
            break
        if config.max_seconds is not None and time.perf_counter() - started > config.max_seconds:
            log.info(
                "stopping after %d epochs: max_seconds %.0f reached", epoch, config.max_seconds
            )
            break
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


def _full_batch_epoch(
    model: EmbeddingModel,
    split: LinkSplit,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    config: TrainConfig,
    device: torch.device,
) -> float:
    model.train()
    graph, supervision = split.train_graph(generator)
    supervision = {edge_type: pos.to(device) for edge_type, pos in supervision.items()}
    return _step(model, optimizer, graph.to(device), supervision, config, generator)


def _mini_batch_epoch(
    model: EmbeddingModel,
    split: LinkSplit,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    config: TrainConfig,
    device: torch.device,
) -> float:
    """One pass over this epoch's supervision edges in batches over sampled neighbourhoods."""
    model.train()
    graph, supervision = split.train_graph(generator)
    sampler = make_neighbor_sampler(
        graph,
        list(config.num_neighbors),
        seed=int(torch.randint(0, 2**31, (1,), generator=generator)),
    )
    total, batches = 0.0, 0
    for edge_type, pos in supervision.items():
        loader = LinkLoader(
            graph,
            link_sampler=sampler,
            edge_label_index=(edge_type, pos),
            batch_size=config.batch_size or 4096,
            shuffle=True,
        )
        for batch in loader:
            batch = batch.to(device)
            label_index = {edge_type: batch[edge_type].edge_label_index}
            total += _step(model, optimizer, batch, label_index, config, generator)
            batches += 1
    return total / max(batches, 1)


def _step(
    model: EmbeddingModel,
    optimizer: torch.optim.Optimizer,
    graph: HeteroData,
    supervision: dict[EdgeType, torch.Tensor],
    config: TrainConfig,
    generator: torch.Generator,
) -> float:
    """One optimiser step: embed ``graph``, link loss on ``supervision`` (+ auxiliary loss)."""
    optimizer.zero_grad()
    z = model(graph)
    loss = sum(
        _link_loss(model, z, edge_type, pos, config, generator, graph[edge_type].edge_index)
        for edge_type, pos in supervision.items()
    )
    aux = model.auxiliary_loss(graph, z)
    if aux is not None:
        loss = loss + aux
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _link_loss(
    model: EmbeddingModel,
    z: dict[str, torch.Tensor],
    edge_type: EdgeType,
    pos: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    mp_edges: torch.Tensor,
) -> torch.Tensor:
    """The loss of positives against ``config.negatives`` uniformly drawn destinations each,
    one draw per group of ``config.negatives_shared_by`` positives, and ``config.hard_negatives``
    of their own two hops away in ``mp_edges`` (this edge type's message-passing edges):
    softmax cross-entropy of each positive among its negatives (a sampled ranking loss, what
    MRR measures), or binary cross-entropy of every link on its own."""
    n_pos, group, k = pos.size(1), config.negatives_shared_by, config.negatives
    groups = -(-n_pos // group)
    # The last group is padded with the first source; its padded rows are dropped below.
    src = torch.cat([pos[0], pos[0, :1].expand(groups * group - n_pos)]).view(groups, group)
    dst = torch.randint(0, z[edge_type[2]].size(0), (groups, k), generator=generator)
    neg_logits = model.candidate_logits(z, edge_type, src, dst.to(pos.device))
    neg_logits = neg_logits.reshape(groups * group, k)[:n_pos]
    if config.hard_negatives:
        hard = _two_hop_negatives(
            pos, mp_edges, z[edge_type[2]].size(0), config.hard_negatives, generator
        )
        src = pos[0].repeat_interleave(config.hard_negatives)
        hard_logits = model.link_logits(z, edge_type, torch.stack([src, hard.view(-1)]))
        neg_logits = torch.cat([neg_logits, hard_logits.view(n_pos, -1)], dim=1)
    pos_logits = model.link_logits(z, edge_type, pos)
    if config.loss == "softmax":
        logits = torch.cat([pos_logits.unsqueeze(1), neg_logits], dim=1)
        target = torch.zeros(n_pos, dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target)
    return F.binary_cross_entropy_with_logits(
        pos_logits, torch.ones_like(pos_logits)
    ) + F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits))


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
) -> dict[str, torch.Tensor]:
    """Every node's embedding in ``graph`` (in batches over sampled neighbourhoods when
    ``config`` asks for mini-batches), on the CPU."""
    model.eval()
    device = device or next(iter(model.parameters()), torch.empty(0)).device
    if config is None or config.batch_size is None:
        return {t: v.cpu() for t, v in model(graph.to(device)).items()}
    sampler = make_neighbor_sampler(graph, list(config.num_neighbors), seed=config.seed)
    out: dict[str, torch.Tensor] = {}
    for node_type in graph.node_types:
        n = graph[node_type].num_nodes
        if not n:
            continue
        parts = []
        loader = NodeLoader(
            graph, node_sampler=sampler, input_nodes=node_type, batch_size=config.batch_size
        )
        for batch in loader:
            z = model(batch.to(device))[node_type]
            parts.append(z[: batch[node_type].batch_size].cpu())
        out[node_type] = torch.cat(parts)
    return out


def validation_mrr(
    model: EmbeddingModel,
    split: LinkSplit,
    graph: HeteroData,
    device: torch.device,
    config: TrainConfig | None = None,
) -> float:
    """Mean MRR over the target edge types of the validation edges against their candidates."""
    z = embed(model, graph, device, config)
    scores = [
        ranking_metrics(*candidate_scores(model, z, edge_type, held))["mrr"]
        for edge_type, held in split.val.items()
    ]
    return float(np.mean(scores))


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
