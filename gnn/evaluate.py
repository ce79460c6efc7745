"""The evaluation protocol: one split, the same candidates and seeds for every model.

- Link prediction on the split's held-out test edges, in the graph of train + validation edges:
  each edge ranked against its fixed row of filtered random and hard negatives (MRR, Hits@1/3/10,
  realistic ranks), ROC-AUC of all positives against all negatives; MRR against the hard
  negatives alone is reported beside it. With a calibration (fitted on the validation edges,
  :func:`fit_calibration`), the expected calibration error of the probabilities of the test
  edges and their candidates, and the reliability diagram behind it.
- Clustering: k-means on the embeddings of the nodes that have exactly one class through the
  label relation (which no model ever sees), against those classes (NMI, ARI).
- Cross-modal retrieval on the held-out retrieval nodes: each node's text alone is the query,
  the held-out nodes' images alone the candidates (Recall@1/10), for every model that can embed
  one modality of a node on its own.

A metric that does not apply (no labels, no retrieval nodes, a model that cannot embed one
modality) is ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmgraph.gnn.calibration import Calibration
from mmgraph.gnn.metrics import (
    clustering_metrics,
    expected_calibration_error,
    ranking_metrics,
    reliability,
    retrieval_recall,
    roc_auc,
)
from mmgraph.gnn.names import METRICS
from mmgraph.gnn.split import EdgeType, HeldOut, LinkSplit
from mmgraph.gnn.train import SCORE_CHUNK


@dataclass
class Embedder:
    """What the protocol needs of a model: embed a graph, score links from embeddings, and
    (optionally) embed nodes from one modality alone and turn scores into probabilities."""

    embed: Callable[[HeteroData], dict[str, torch.Tensor]]
    score: Callable[[dict[str, torch.Tensor], EdgeType, torch.Tensor], torch.Tensor]
    embed_one: Callable[[str, str, torch.Tensor], torch.Tensor] | None = None
    calibration: Calibration | None = None


def cosine_score(
    z: dict[str, torch.Tensor], edge_type: EdgeType, index: torch.Tensor
) -> torch.Tensor:
    """Cosine similarity of the two ends: the scorer of models without a trained decoder."""
    a = torch.nn.functional.normalize(z[edge_type[0]][index[0]], dim=1)
    b = torch.nn.functional.normalize(z[edge_type[2]][index[1]], dim=1)
    return (a * b).sum(1)


def fit_calibration(embedder: Embedder, split: LinkSplit) -> Calibration:
    """Platt scaling of the embedder's scores on the validation edges and their candidates, in
    the graph they are predicted in (:mod:`mmgraph.gnn.calibration`)."""
    with torch.no_grad():
        z = {t: v.detach().cpu() for t, v in embedder.embed(split.graph("val")).items()}
    scores = [held_out_scores(embedder, z, et, held) for et, held in split.val.items()]
    return Calibration.fit(
        np.concatenate([p for p, _ in scores]), np.concatenate([n.ravel() for _, n in scores])
    )


def held_out_scores(
    embedder: Embedder, z: dict[str, torch.Tensor], edge_type: EdgeType, held: HeldOut
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of each held-out edge and of its row of candidates."""
    n, k = held.negatives.shape
    rows = max(1, SCORE_CHUNK // max(k, 1))
    neg = np.empty((n, k), dtype=np.float32)
    with torch.no_grad():
        pos = embedder.score(z, edge_type, held.edge_index).float().cpu().numpy()
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            src = held.edge_index[0, start:stop].repeat_interleave(k)
            index = torch.stack([src, held.negatives[start:stop].reshape(-1)])
            neg[start:stop] = (
                embedder.score(z, edge_type, index).float().cpu().numpy().reshape(-1, k)
            )
    return pos, neg


def evaluate(embedder: Embedder, split: LinkSplit, stage: str = "test") -> dict[str, float | None]:
    """Every metric of the protocol for one model (see the module)."""
    with torch.no_grad():
        z = {t: v.detach().cpu() for t, v in embedder.embed(split.graph(stage)).items()}
    held_out = split.test if stage == "test" else split.val
    pos, neg, hard_rr = [], [], []
    for edge_type, held in held_out.items():
        p, n = held_out_scores(embedder, z, edge_type, held)
        pos.append(p)
        neg.append(n)
        hard_rr.append(_hard_reciprocal_ranks(p, n, held.hard.numpy()))
    metrics: dict[str, float | None] = dict.fromkeys(METRICS)
    metrics.update(ranking_metrics(np.concatenate(pos), _stack_rows(neg)))
    positives, negatives = np.concatenate(pos), np.concatenate([n.ravel() for n in neg])
    metrics["auc"] = roc_auc(positives, negatives)
    if embedder.calibration is not None:
        probabilities = embedder.calibration.probability(np.concatenate([positives, negatives]))
        labels = np.concatenate([np.ones(positives.size), np.zeros(negatives.size)])
        metrics["ece"] = expected_calibration_error(probabilities, labels)
        metrics["reliability"] = [list(row) for row in reliability(probabilities, labels)]
    hard = np.concatenate(hard_rr)
    metrics["mrr_hard"] = float(hard.mean()) if hard.size else None
    metrics.update(_clustering(z, split))
    metrics.update(retrieval_metrics(embedder, split))
    return metrics


def _hard_reciprocal_ranks(pos: np.ndarray, neg: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """1 / realistic rank of each positive among its row's hard negatives alone (rows that
    have none are left out)."""
    rows = hard.any(axis=1)
    above = ((neg > pos[:, None]) & hard).sum(axis=1)
    ties = ((neg == pos[:, None]) & hard).sum(axis=1)
    return 1.0 / (1.0 + above[rows] + ties[rows] / 2.0)


def _stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Stack candidate rows of several edge types, trimmed to the narrowest."""
    width = min(r.shape[1] for r in rows)
    return np.concatenate([r[:, :width] for r in rows])


def _clustering(z: dict[str, torch.Tensor], split: LinkSplit) -> dict[str, float | None]:
    scores = []
    for node_type, y in split.labels.items():
        labelled = torch.nonzero(y >= 0).flatten()
        if labelled.numel() < 2 or len(set(y[labelled].tolist())) < 2:
            continue
        found = clustering_metrics(
            z[node_type][labelled].numpy(), y[labelled].numpy(), seed=split.config.seed
        )
        scores.append((labelled.numel(), found))
    if not scores:
        return {"nmi": None, "ari": None}
    total = sum(n for n, _ in scores)
    return {
        key: float(sum(n * found[key] for n, found in scores) / total) for key in ("nmi", "ari")
    }


def retrieval_metrics(embedder: Embedder, split: LinkSplit) -> dict[str, float | None]:
    """Text->image Recall@1/10 of the embedder's single-modality embeddings on the split's
    retrieval nodes (``None`` where it cannot embed one modality or there are none)."""
    if embedder.embed_one is None or not split.retrieval_nodes:
        return {"recall@1": None, "recall@10": None}
    queries, candidates = [], []
    with torch.no_grad():
        for node_type, nodes in split.retrieval_nodes.items():
            store = split.base[node_type]
            queries.append(embedder.embed_one(node_type, "text", store.text_x[nodes]).cpu())
            candidates.append(embedder.embed_one(node_type, "image", store.image_x[nodes]).cpu())
    found = retrieval_recall(torch.cat(queries).numpy(), torch.cat(candidates).numpy())
    return {"recall@1": found["recall@1"], "recall@10": found["recall@10"]}
