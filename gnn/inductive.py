"""Embeddings for nodes added after a run was trained, from that run's model, and the policy that
says when to retrain instead.

The message-passing models hold no per-node parameters, so a node unseen in training is embedded
from its features and neighbourhood by the trained weights (inductive inference):
:func:`infer_new_nodes` rebuilds the graph the run embeds (every relation but the split's label
relation, target relations deduplicated as the split does, reverse edges as training adds them,
node types, modalities and edge types as the run's :class:`GraphMeta` has them) from the current
export, runs the model in eval mode as training's final embedding pass did (full-batch, or
mini-batches over the run's sampled neighbourhoods when it trained that way), and keeps the rows
of the new nodes. Closed-form runs (CCA) project the new nodes' features; no graph is needed.
The single-modality spaces (``text``, ``image``) embed each modality alone, as queries are
(through the run's alignment when it has one).

Existing nodes keep the embeddings they were trained with; the drift that new neighbours cause
them, and the new nodes themselves, are what :func:`staleness` measures against what the run was
trained on: a retrain is due when the share of new nodes, or of new target-relation edges (the
only edge counts a run records), passes a threshold (:func:`is_stale`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch_geometric.data import HeteroData
from torch_geometric.loader import NodeLoader

from mmgraph.core.errors import FailedPreconditionError, InvalidArgumentError
from mmgraph.gnn.data import GraphExport
from mmgraph.gnn.evaluate import Embedder, cosine_score, evaluate
from mmgraph.gnn.models.base import GraphMeta
from mmgraph.gnn.names import DEFAULT_STALENESS_THRESHOLD
from mmgraph.gnn.runs import ClosedFormNetwork, ModelRun
from mmgraph.gnn.sampler import make_neighbor_sampler
from mmgraph.gnn.spaces import FUSED, centered_unit
from mmgraph.gnn.split import REVERSE_PREFIX, LinkSplit, SplitConfig, with_reverse_edges
from mmgraph.gnn.train import TrainConfig, embed, neighbours

BATCH = 4096
DEFAULT_THRESHOLD = DEFAULT_STALENESS_THRESHOLD


class GraphMismatchError(FailedPreconditionError):
    """The current graph no longer fits the run (a modality's vectors changed size): only
    retraining can embed it."""


class RetrainSettingsError(FailedPreconditionError):
    """The run does not record how it was trained (no split), so it cannot be retrained alike."""


class ThresholdError(InvalidArgumentError):
    """A staleness threshold outside [0, 1]."""


@dataclass
class NewNodes:
    """Embeddings of nodes the run had none for, shaped as :class:`~mmgraph.gnn.artifacts.
    RunRecord` holds them (and as :func:`~mmgraph.gnn.artifacts.append_nodes` takes them).

    Attributes:
        uids: node type -> the new nodes' uids.
        raw: node type -> their fused embeddings as the link decoder sees them.
        spaces: space -> node type -> ``(L2-normalised rows, rows into uids[type])``.
        unknown_types: node types the run was not trained on -> how many nodes (not embedded).
    """

    uids: dict[str, list[str]] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    spaces: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    unknown_types: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(u) for u in self.uids.values())


@dataclass(frozen=True)
class Staleness:
    """What was added since the run was trained; shares are of what it was trained on."""

    new_nodes: int
    new_edges: int
    node_share: float
    edge_share: float
    trained_nodes: int
    trained_edges: int

    def exceeds(self, threshold: float = DEFAULT_THRESHOLD) -> bool:
        """Whether the share of new nodes or of new edges is above ``threshold``."""
        check_threshold(threshold)
        return self.node_share > threshold or self.edge_share > threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise ThresholdError(f"threshold must be in [0, 1], got {threshold}")
    return threshold


def new_node_rows(run: ModelRun, export: GraphExport) -> dict[str, np.ndarray]:
    """Node type -> the export rows of the nodes ``run`` has no embedding for (trained or
    appended), for the node types the run knows."""
    out = {}
    for node_type, uids in export.uids.items():
        if node_type not in run.uids:
            continue
        known = set(run.uids[node_type])
        rows = np.array([i for i, uid in enumerate(uids) if uid not in known], dtype=np.int64)
        if rows.size:
            out[node_type] = rows
    return out


def inference_graph(run: ModelRun, export: GraphExport) -> HeteroData:
    """The current graph as ``run``'s model embeds it: what ``LinkSplit.full_graph`` gave
    training, rebuilt from ``export`` and fitted to the run's schema."""
    split = run.config.get("split", {})
    label = split.get("label_relation")
    targets = set(split.get("target_relations", [rel for _, rel, _ in run.relations]))
    forward = HeteroData()
    for node_type in export.data.node_types:
        forward[node_type].num_nodes = export.data[node_type].num_nodes
        for key, value in export.data[node_type].items():
            if key.endswith(("_x", "_mask")):
                forward[node_type][key] = value
    for edge_type in export.data.edge_types:
        src, rel, dst = edge_type
        if rel == label or rel.startswith(REVERSE_PREFIX):
            continue
        edge_index = export.data[edge_type].edge_index
        if rel in targets:
            edge_index = _distinct(edge_index, symmetric=src == dst)
        forward[edge_type].edge_index = edge_index
    return conform(with_reverse_edges(forward), run.meta)


def conform(data: HeteroData, meta: GraphMeta) -> HeteroData:
    """``data`` with exactly ``meta``'s node types, modalities and edge types: those it lacks
    are empty (zero features, masked out; no edges), those the model was not built for dropped.

    Raises:
        GraphMismatchError: a modality whose vectors have another size than the model's.
    """
    out = HeteroData()
    for node_type in meta.node_types:
        present = node_type in data.node_types
        n = int(data[node_type].num_nodes or 0) if present else 0
        out[node_type].num_nodes = n
        for modality, dim in meta.modalities[node_type].items():
            key = f"{modality}_x"
            if present and key in data[node_type]:
                x = data[node_type][key]
                if x.size(1) != dim:
                    raise GraphMismatchError(
                        f"{node_type}.{modality} vectors have {x.size(1)} dimensions in the graph "
                        f"but {dim} in the model (another encoder?): retrain to embed them"
                    )
                out[node_type][key] = x
                out[node_type][f"{modality}_mask"] = data[node_type][f"{modality}_mask"]
            else:
                out[node_type][key] = torch.zeros(n, dim)
                out[node_type][f"{modality}_mask"] = torch.zeros(n, dtype=torch.bool)
    for edge_type in meta.edge_types:
        if edge_type in data.edge_types:
            out[edge_type].edge_index = data[edge_type].edge_index
        else:
            out[edge_type].edge_index = torch.empty(2, 0, dtype=torch.long)
    return out


def infer_new_nodes(run: ModelRun, export: GraphExport) -> NewNodes:
    """Embed, with ``run``'s trained model, the nodes of ``export`` that ``run`` has no
    embedding for (see the module); nodes of types the run was not trained on are counted in
    :attr:`NewNodes.unknown_types`, not embedded."""
    result = NewNodes(
        unknown_types={
            t: len(u) for t, u in export.uids.items() if t not in run.uids and len(u) > 0
        }
    )
    rows = new_node_rows(run, export)
    if not rows:
        return result
    network = run.network()
    if isinstance(network, ClosedFormNetwork):
        raw = _project(network.cca, conform(export.data, run.meta), rows)
    else:
        raw = _message_passing(run, network.model, inference_graph(run, export), rows)
    result.uids = {t: [export.uids[t][i] for i in r.tolist()] for t, r in rows.items()}
    result.raw = raw
    result.spaces[FUSED] = {
        t: (centered_unit(z, run.center(FUSED, t)), np.arange(len(z))) for t, z in raw.items()
    }
    for space in run.spaces:
        if space == FUSED:
            continue
        per_type = {}
        for node_type, node_rows in rows.items():
            if space not in run.meta.modalities.get(node_type, {}):
                continue
            store = export.data[node_type]
            if f"{space}_mask" not in store:
                continue
            has = store[f"{space}_mask"][torch.from_numpy(node_rows)].numpy()
            if has.any():
                x = store[f"{space}_x"][torch.from_numpy(node_rows[has])].numpy()
                vectors = [
                    run.embed_query(node_type, space, x[i : i + BATCH], space)
                    for i in range(0, len(x), BATCH)
                ]
                per_type[node_type] = (np.concatenate(vectors), np.flatnonzero(has))
        if per_type:
            result.spaces[space] = per_type
    return result


def _message_passing(
    run: ModelRun, model: torch.nn.Module, graph: HeteroData, rows: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The model's embeddings of ``rows`` in ``graph``: one full-batch pass, or mini-batches
    over sampled neighbourhoods of the new nodes alone when the run was trained that way."""
    model.eval()
    if run.config.get("mode") != "mini":
        z = embed(model, graph, torch.device("cpu"))
        return {t: z[t][torch.from_numpy(r)].float().numpy() for t, r in rows.items()}
    config = train_config(run)
    # Sampled as training sampled: fan-outs per relation, capped at the typical in-degree.
    sampler = make_neighbor_sampler(graph, neighbours(graph, config), seed=config.seed)
    out = {}
    with torch.no_grad():
        for node_type, node_rows in rows.items():
            loader = NodeLoader(
                graph,
                node_sampler=sampler,
                input_nodes=(node_type, torch.from_numpy(node_rows)),
                batch_size=config.batch_size or BATCH,
            )
            parts = [
                model(batch)[node_type][: batch[node_type].batch_size].float() for batch in loader
            ]
            out[node_type] = torch.cat(parts).numpy()
    return out


def _project(cca: Any, data: HeteroData, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A closed-form run's embeddings of ``rows``: their features projected (no graph)."""
    view = HeteroData()
    for node_type, node_rows in rows.items():
        index = torch.from_numpy(node_rows)
        view[node_type].num_nodes = len(node_rows)
        for key, value in data[node_type].items():
            if key.endswith(("_x", "_mask")):
                view[node_type][key] = value[index]
    return {t: z.float().numpy() for t, z in cca.embed(view).items()}


def staleness(run: ModelRun, export: GraphExport) -> Staleness:
    """New nodes (of any type) and new edges of the target relations in ``export`` against what
    ``run`` was trained on; nodes appended since (:func:`infer_new_nodes`) still count as new."""
    trained_nodes = sum(len(u) for u in run.trained_uids.values())
    new_nodes = 0
    for node_type, uids in export.uids.items():
        known = set(run.trained_uids.get(node_type, []))
        new_nodes += sum(uid not in known for uid in uids)
    split = run.config.get("split", {})
    trained = {key: sum(parts.values()) for key, parts in split.get("edges", {}).items()}
    targets = set(split.get("target_relations", []))
    new_edges = 0
    for edge_type in export.data.edge_types:
        src, rel, dst = edge_type
        if rel not in targets:
            continue
        now = _distinct(export.data[edge_type].edge_index, symmetric=src == dst).size(1)
        new_edges += max(0, now - trained.get("/".join(edge_type), 0))
    trained_edges = sum(trained.values())
    return Staleness(
        new_nodes=new_nodes,
        new_edges=new_edges,
        node_share=new_nodes / trained_nodes if trained_nodes else float(new_nodes > 0),
        edge_share=new_edges / trained_edges if trained_edges else float(new_edges > 0),
        trained_nodes=trained_nodes,
        trained_edges=trained_edges,
    )


def is_stale(run: ModelRun, export: GraphExport, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """Whether ``run`` should be retrained on ``export``'s graph (see :class:`Staleness`)."""
    return staleness(run, export).exceeds(threshold)


def split_config(run: ModelRun) -> SplitConfig:
    """The split settings ``run`` was trained with, as far as it records them (the label-via
    relation and supervision ratio are not recorded: defaults; retrieval nodes are held out
    only if the run held some out)."""
    split = run.config.get("split")
    if not split:
        raise RetrainSettingsError(
            f"run {run.run_id} records no split: train one with `mmgraph train` instead"
        )
    retrieval = any(split.get("retrieval_nodes", {}).values())
    return SplitConfig(
        target_relations=tuple(split["target_relations"]),
        label_relation=split["label_relation"],
        val_ratio=split["val_ratio"],
        test_ratio=split["test_ratio"],
        num_negatives=split["negatives"]["random"],
        num_hard_negatives=split["negatives"]["hard"],
        retrieval_ratio=SplitConfig.retrieval_ratio if retrieval else 0.0,
        seed=split["seed"],
    )


def train_config(run: ModelRun) -> TrainConfig:
    """The training settings ``run`` was trained with."""
    settings = dict(run.config.get("train", {}))
    if "num_neighbors" in settings:
        settings["num_neighbors"] = tuple(settings["num_neighbors"])
    return TrainConfig(**settings)


def validation_metrics(run: ModelRun, split: LinkSplit) -> dict[str, float | None]:
    """``run``'s metrics on the validation edges of ``split`` (any split of a graph that fits
    the run: its model embeds the split's graphs inductively), so that two runs trained on
    different graphs are compared on one protocol."""
    network = run.network()

    def embed_one(node_type: str, modality: str, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(network.embed(node_type, modality, x.numpy()))

    if isinstance(network, ClosedFormNetwork):
        embedder = Embedder(
            embed=lambda g: network.cca.embed(conform(g, run.meta)),
            score=cosine_score,
            embed_one=embed_one,
        )
    else:
        model = network.model
        mini = train_config(run) if run.config.get("mode") == "mini" else None
        embedder = Embedder(
            embed=lambda g: embed(model, conform(g, run.meta), torch.device("cpu"), mini),
            score=lambda z, et, index: model.link_logits(z, et, index),
            embed_one=embed_one,
        )
    return evaluate(embedder, split, stage="val")


def _distinct(edge_index: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """Distinct edges, ``a->b`` and ``b->a`` one pair within one node type: the split's rule
    for target relations."""
    pairs = edge_index.t().numpy()
    if symmetric:
        pairs = np.sort(pairs, axis=1)
    return torch.from_numpy(np.unique(pairs, axis=0).T.copy()).long().reshape(2, -1)
