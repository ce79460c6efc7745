"""Link-prediction splits that cannot leak, and the fixed candidates every model is ranked on.

Guarantees (tested in ``tests/gnn/test_split.py``):

- The label relation (the answer of the clustering evaluation) is in no message-passing graph.
- The edges of each target relation are split into train / validation / test. An edge and its
  reverse always fall on the same side: for a relation within one node type, ``a->b`` and
  ``b->a`` are one undirected pair; every message-passing graph gets a ``rev_<REL>`` edge type
  built from its own forward edges, so a reverse can never carry a held-out edge.
- Supervision edges are never in the message-passing graph of their own split: validation edges
  are predicted over train edges only, test edges over train + validation edges, and in training
  each epoch draws a disjoint part of the train edges as supervision (:meth:`LinkSplit.train_graph`)
  and passes messages over the rest.
- Nodes held out for cross-modal retrieval are excluded from any cross-modal training signal
  (:attr:`LinkSplit.retrieval_nodes`); their features and links stay in the graph.

Impossible splits (a target relation that is not in the graph, too few edges to hold any out) are
refused with :class:`SplitError`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn.candidates import (
    PairSet,
    TwoHop,
    first_occurrence,
    hard_candidates,
    random_candidates,
    unique,
)

log = logging.getLogger(__name__)

EdgeType = tuple[str, str, str]
REVERSE_PREFIX = "rev_"


class SplitError(InvalidArgumentError):
    """The requested split cannot be made on this graph."""


@dataclass(frozen=True)
class SplitConfig:
    """How to split: target and label relations, ratios, negatives and the seed.

    Args:
        target_relations: relationship types whose links are predicted (default ``HAS_TAG``).
        label_relation: the relationship giving each node its class for clustering; removed from
            every graph a model sees. ``None``: no clustering labels.
        label_via: a relationship whose source takes its target's class (a skin-tone variant
            takes its base emoji's), or ``None``.
        val_ratio, test_ratio: shares of each target relation's edges held out.
        supervision_ratio: share of the train edges used as supervision in each epoch.
        num_negatives: random negatives per held-out edge (same node type, filtered).
        num_hard_negatives: hard negatives per held-out edge: nodes of the true end's type two
            hops from it (they share a neighbour with it), filtered.
        retrieval_ratio: share of the nodes with both ``text`` and ``image`` held out for
            cross-modal retrieval.
        seed: seeds every random choice of the split.
    """

    target_relations: tuple[str, ...] = ("HAS_TAG",)
    label_relation: str | None = "IN_SUBCATEGORY"
    label_via: str | None = "VARIANT_OF"
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    supervision_ratio: float = 0.3
    num_negatives: int = 100
    num_hard_negatives: int = 20
    retrieval_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("val_ratio", "test_ratio", "supervision_ratio", "retrieval_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise SplitError(f"{name} must be in [0, 1), got {value}")
        if self.val_ratio + self.test_ratio >= 1.0:
            raise SplitError(
                f"val_ratio + test_ratio must be below 1, got {self.val_ratio + self.test_ratio}"
            )
        if not self.target_relations:
            raise SplitError("target_relations must name at least one relationship type")
        if self.label_relation in self.target_relations:
            raise SplitError(
                f"the label relation {self.label_relation!r} cannot also be a target relation"
            )
        if self.num_negatives < 1 or self.num_hard_negatives < 0:
            raise SplitError(
                "num_negatives must be at least 1 and num_hard_negatives at least 0, got "
                f"{self.num_negatives} and {self.num_hard_negatives}"
            )


@dataclass
class HeldOut:
    """Held-out edges of one target edge type with their fixed, filtered candidates.

    ``negatives`` has one row of candidate destinations (node indices) per edge; ``hard``
    (same shape) marks the hard ones, two hops from the true end.
    """

    edge_index: torch.Tensor
    negatives: torch.Tensor
    hard: torch.Tensor


@dataclass
class LinkSplit:
    """One split of a graph, shared by every model so one table compares them all."""

    config: SplitConfig
    base: HeteroData  # every node and its features; the non-target, non-label edges
    train_edges: dict[EdgeType, torch.Tensor]
    val: dict[EdgeType, HeldOut]
    test: dict[EdgeType, HeldOut]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)  # node type -> class, -1 none
    label_names: list[str] = field(default_factory=list)
    retrieval_nodes: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def target_edge_types(self) -> list[EdgeType]:
        return list(self.train_edges)

    def graph(self, stage: str) -> HeteroData:
        """The message-passing graph in which ``stage``'s ("val" or "test") edges are
        predicted: train edges (and, for "test", validation edges) plus all other relations."""
        if stage not in ("val", "test"):
            raise SplitError(f"stage must be 'val' or 'test', got {stage!r}")
        edges = {}
        for edge_type, train in self.train_edges.items():
            parts = [train] + ([self.val[edge_type].edge_index] if stage == "test" else [])
            edges[edge_type] = torch.cat(parts, dim=1)
        return _with_edges(self.base, edges)

    def full_graph(self) -> HeteroData:
        """Every edge but the label relation's: what a promoted model embeds."""
        edges = {
            edge_type: torch.cat(
                [train, self.val[edge_type].edge_index, self.test[edge_type].edge_index], dim=1
            )
            for edge_type, train in self.train_edges.items()
        }
        return _with_edges(self.base, edges)

    def train_graph(
        self, generator: torch.Generator
    ) -> tuple[HeteroData, dict[EdgeType, torch.Tensor]]:
        """One epoch's message-passing graph and its disjoint supervision edges."""
        mp, supervision = {}, {}
        for edge_type, edges in self.train_edges.items():
            order = torch.randperm(edges.size(1), generator=generator)
            n_sup = max(1, int(round(self.config.supervision_ratio * edges.size(1))))
            supervision[edge_type] = edges[:, order[:n_sup]]
            mp[edge_type] = edges[:, order[n_sup:]]
        return _with_edges(self.base, mp), supervision

    def describe(self) -> dict[str, object]:
        """The split's shape for reports: seed, ratios, counts per target edge type."""
        return {
            "seed": self.config.seed,
            "target_relations": list(self.config.target_relations),
            "label_relation": self.config.label_relation,
            "val_ratio": self.config.val_ratio,
            "test_ratio": self.config.test_ratio,
            "negatives": {
                "random": self.config.num_negatives,
                "hard": self.config.num_hard_negatives,
            },
            "edges": {
                "/".join(et): {
                    "train": int(self.train_edges[et].size(1)),
                    "val": int(self.val[et].edge_index.size(1)),
                    "test": int(self.test[et].edge_index.size(1)),
                }
                for et in self.train_edges
            },
            "labelled_nodes": {t: int((y >= 0).sum()) for t, y in self.labels.items()},
            "retrieval_nodes": {t: int(n.numel()) for t, n in self.retrieval_nodes.items()},
        }


def split_graph(data: HeteroData, config: SplitConfig | None = None) -> LinkSplit:
    """Split ``data`` (directed edge types as exported) for link prediction (see module)."""
    config = config or SplitConfig()
    reverse = [et for et in data.edge_types if et[1].startswith(REVERSE_PREFIX)]
    if reverse:
        raise SplitError(
            f"split_graph takes the graph's own (directed) edge types; {reverse} look like "
            "reverse types already added, which would carry held-out edges into training"
        )
    rng = np.random.default_rng(config.seed)
    present = {rel for _, rel, _ in data.edge_types}
    missing = [rel for rel in config.target_relations if rel not in present]
    if missing:
        raise SplitError(f"target relation(s) {missing} not in the graph; it has {sorted(present)}")
    targets = [et for et in data.edge_types if et[1] in config.target_relations]
    labels, label_names = _labels(data, config)
    base = HeteroData()
    for node_type in data.node_types:
        for key, value in data[node_type].items():
            base[node_type][key] = value
        base[node_type].num_nodes = data[node_type].num_nodes
    kept = {
        et: data[et].edge_index
        for et in data.edge_types
        if et not in targets and et[1] != config.label_relation
    }
    for edge_type, edge_index in kept.items():
        base[edge_type].edge_index = edge_index
    train, val, test = {}, {}, {}
    for edge_type in targets:
        edge_index = _dedupe(data[edge_type].edge_index, symmetric=edge_type[0] == edge_type[2])
        parts = _partition(edge_index.size(1), config, rng, edge_type)
        train[edge_type] = edge_index[:, parts[0]]
        true_links = PairSet.of(data[edge_type].edge_index, data[edge_type[2]].num_nodes)
        # Hard negatives: two hops from the true end in the graph the test edges are ranked in.
        hop_graph = TwoHop(
            {**kept, edge_type: torch.cat([edge_index[:, parts[0]], edge_index[:, parts[1]]], 1)},
            {t: data[t].num_nodes for t in data.node_types},
            edge_type[2],
        )
        val[edge_type] = _held_out(
            edge_index[:, parts[1]], edge_type, data, true_links, hop_graph, config, rng
        )
        test[edge_type] = _held_out(
            edge_index[:, parts[2]], edge_type, data, true_links, hop_graph, config, rng
        )
    retrieval = _retrieval(data, config, rng)
    for node_type, nodes in retrieval.items():
        # Models with a cross-modal training term must leave these nodes out of it.
        exclude = torch.zeros(data[node_type].num_nodes, dtype=torch.bool)
        exclude[nodes] = True
        base[node_type].contrastive_exclude = exclude
    return LinkSplit(config, base, train, val, test, labels, label_names, retrieval)


def with_reverse_edges(data: HeteroData) -> HeteroData:
    """Add ``(D, rev_R, S)`` for every ``(S, R, D)``: PyG's ``ToUndirected`` naming, but kept
    as separate types even within one node type, so models see the direction."""
    out = copy.copy(data)  # shares the feature tensors: a clone would copy them every epoch
    for src, rel, dst in list(data.edge_types):
        if rel.startswith(REVERSE_PREFIX):
            continue
        out[dst, f"{REVERSE_PREFIX}{rel}", src].edge_index = data[src, rel, dst].edge_index.flip(0)
    return out


def _with_edges(base: HeteroData, targets: dict[EdgeType, torch.Tensor]) -> HeteroData:
    data = copy.copy(base)
    for edge_type, edge_index in targets.items():
        data[edge_type].edge_index = edge_index
    return with_reverse_edges(data)


def _dedupe(edge_index: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """Distinct edges in ``(source, destination)`` order; within one node type ``a->b`` and
    ``b->a`` become one pair, so that an edge and its reverse can only be split together."""
    pairs = edge_index.numpy()
    if symmetric:
        pairs = np.sort(pairs, axis=0)
    width = int(pairs[1].max(initial=-1)) + 1
    first, second = np.divmod(unique(pairs[0].astype(np.int64) * width + pairs[1]), width)
    return torch.from_numpy(np.stack([first, second])).long()


def _partition(
    n: int, config: SplitConfig, rng: np.random.Generator, edge_type: EdgeType
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_val, n_test = int(round(config.val_ratio * n)), int(round(config.test_ratio * n))
    empty = (config.val_ratio and not n_val) or (config.test_ratio and not n_test)
    if n - n_val - n_test < 2 or empty:
        raise SplitError(
            f"{'/'.join(edge_type)} has {n} edge(s): too few to hold out "
            f"{config.val_ratio:.0%} + {config.test_ratio:.0%} and keep some to train on"
        )
    order = rng.permutation(n)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def _held_out(
    edge_index: torch.Tensor,
    edge_type: EdgeType,
    data: HeteroData,
    true_links: PairSet,
    hop_graph: TwoHop,
    config: SplitConfig,
    rng: np.random.Generator,
) -> HeldOut:
    """Fixed candidates per held-out edge: hard negatives first where they exist, random ones
    for the rest, never a true link. On a graph too small for the configured number, every row
    gets as many as the poorest source allows (with a warning)."""
    dst_type = edge_type[2]
    n_dst = data[dst_type].num_nodes
    s, d = edge_index.numpy()
    linked = true_links.count_per_first(data[edge_type[0]].num_nodes)
    width = config.num_negatives + config.num_hard_negatives
    poorest = int((n_dst - linked[s]).min(initial=width))
    if poorest < 1:
        raise SplitError(f"{'/'.join(edge_type)}: a source is linked to every {dst_type}")
    if poorest < width:
        log.warning(
            "%s: only %d filtered negatives exist for some edges; using %d per edge, not %d",
            "/".join(edge_type),
            poorest,
            poorest,
            width,
        )
        width = poorest
    n_hard = min(config.num_hard_negatives, width)
    hard = hard_candidates(s, d, n_hard, true_links, hop_graph, rng)
    found = (hard >= 0).sum(axis=1)
    randoms = random_candidates(s, hard, width - found, n_dst, true_links, rng)
    # Row layout: randoms[: width - n_hard], then the hard ones, then the remaining randoms.
    column = np.arange(width)
    hard_mask = (column >= width - n_hard) & (column < width - n_hard + found[:, None])
    negatives = np.empty((s.size, width), dtype=np.int64)
    negatives[hard_mask] = hard[hard >= 0]
    negatives[~hard_mask] = randoms[randoms >= 0]
    return HeldOut(edge_index, torch.from_numpy(negatives), torch.from_numpy(hard_mask))


def _labels(data: HeteroData, config: SplitConfig) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Class per node through the label relation (and ``label_via``: a node without a class
    takes the classes of the first node it points to that has one); -1 for none or several."""
    if config.label_relation is None:
        return {}, []
    label_types = [et for et in data.edge_types if et[1] == config.label_relation]
    if not label_types:
        log.warning("label relation %s is not in the graph: no clustering", config.label_relation)
        return {}, []
    names: list[str] = []
    labels: dict[str, torch.Tensor] = {}
    for src, _, dst in label_types:
        offset = len(names)
        names.extend(f"{dst}:{i}" for i in range(data[dst].num_nodes))
        n = data[src].num_nodes
        node, cls = data[src, config.label_relation, dst].edge_index.numpy()
        pairs = PairSet(node, cls + offset, len(names))
        node, cls = np.divmod(pairs.keys, pairs.width)
        count = np.bincount(node, minlength=n)
        y = np.full(n, -1, dtype=np.int64)
        y[node] = cls  # meaningful where the node has one class
        y[count != 1] = -1
        if config.label_via and (src, config.label_via, src) in data.edge_types:
            a, b = data[src, config.label_via, src].edge_index.numpy()
            takes = (count[a] == 0) & (count[b] > 0)
            a, b = a[takes], b[takes]
            first = first_occurrence(a)  # the first such edge of each node
            y[a[first]] = y[b[first]]
        labels[src] = torch.from_numpy(y)
    return labels, names


def _retrieval(
    data: HeteroData, config: SplitConfig, rng: np.random.Generator
) -> dict[str, torch.Tensor]:
    """Per node type with both text and image, a held-out share of the nodes having both."""
    out = {}
    for node_type in data.node_types:
        store = data[node_type]
        if "text_mask" not in store or "image_mask" not in store:
            continue
        both = torch.nonzero(store.text_mask & store.image_mask).flatten().numpy()
        n = int(round(config.retrieval_ratio * len(both)))
        if n >= 2:
            out[node_type] = torch.from_numpy(np.sort(rng.choice(both, size=n, replace=False)))
    return out


def check_no_leak(split: LinkSplit, graphs: Sequence[HeteroData]) -> None:
    """Raise :class:`SplitError` if a test edge or its reverse, or the label relation, is in
    any of ``graphs`` (a guard the training loop runs on the graphs it actually uses)."""
    for data in graphs:
        for edge_type in data.edge_types:
            if edge_type[1] in (
                split.config.label_relation,
                f"{REVERSE_PREFIX}{split.config.label_relation}",
            ):
                raise SplitError(f"the label relation is in a training graph: {edge_type}")
        for edge_type, held in split.test.items():
            src, rel, dst = edge_type
            a, b = held.edge_index.numpy()
            if src == dst:
                a, b = np.concatenate([a, b]), np.concatenate([b, a])
            held_pairs = PairSet(a, b, data[dst].num_nodes)
            for et, flip in ((edge_type, False), ((dst, f"{REVERSE_PREFIX}{rel}", src), True)):
                if et in data.edge_types:
                    index = data[et].edge_index.numpy()
                    first, second = (index[1], index[0]) if flip else (index[0], index[1])
                    if held_pairs.contains(first, second).any():
                        raise SplitError(f"a test edge of {'/'.join(edge_type)} leaked into {et}")
