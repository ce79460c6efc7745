"""Clustering a node set in one of the active model's spaces, with a summary per cluster: its
most central members and the nodes most linked to its members."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmgraph.core.errors import InvalidArgumentError, ResourceExhaustedError
from mmgraph.graph.lookups import common_neighbours
from mmgraph.graph.store import GraphStore
from mmgraph.service.serving.deadline import NO_DEADLINE, Deadline
from mmgraph.service.serving.index import VectorIndex
from mmgraph.service.serving.options import MAX_CLUSTER_NODES, ClusterOptions, Method, check_k
from mmgraph.service.serving.registry import ActiveModel
from mmgraph.service.serving.similar import Hit


@dataclass
class ClusterSummary:
    """One cluster: its id, size, most central members and most common neighbours."""

    cluster: int
    size: int
    central: list[Hit]
    neighbours: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Clustering:
    """Each node's cluster (-1: noise) and a summary per cluster, largest first."""

    uids: list[str]
    types: list[str]
    labels: np.ndarray
    clusters: list[ClusterSummary]
    method: Method


def cluster(
    model: ActiveModel,
    store: GraphStore,
    *,
    types: Sequence[str] = (),
    uids: Sequence[str] = (),
    options: ClusterOptions | None = None,
    deadline: Deadline = NO_DEADLINE,
) -> Clustering:
    """Cluster the nodes of ``types`` and ``uids`` as ``options`` say (default k-means) and
    summarise each cluster; cluster ids are renumbered by size, 0 the largest."""
    options = options or ClusterOptions()
    top = check_k(options.top, "top", default=5, maximum=100)
    space = model.space(options.space)
    node_uids, node_types, vectors = _node_set(model, space, types, uids)
    deadline.check("clustering")
    if options.method == "kmeans":
        clusters = check_k(options.clusters, "clusters", default=8, maximum=10_000)
        raw = _kmeans(vectors, clusters, options.seed)
    elif options.method == "hdbscan":
        size = check_k(
            options.min_cluster_size, "min_cluster_size", default=5, maximum=MAX_CLUSTER_NODES
        )
        raw = _hdbscan(vectors, size)
    else:
        neighbors = check_k(options.neighbors, "neighbors", default=10)
        raw = _communities(vectors, neighbors, options.seed)
    labels = _by_size(raw)
    summaries = _summaries(model, vectors, node_uids, node_types, labels, top)
    deadline.check("reading the clusters' neighbours")
    groups = {uid: int(label) for uid, label in zip(node_uids, labels, strict=True) if label >= 0}
    neighbours = common_neighbours(store, groups, top)
    for summary in summaries:
        summary.neighbours = neighbours.get(summary.cluster, [])
    return Clustering(node_uids, node_types, labels, summaries, options.method)


def _node_set(
    model: ActiveModel, space: str, types: Sequence[str], uids: Sequence[str]
) -> tuple[list[str], list[str], np.ndarray]:
    """The uids, types and vectors of the nodes to cluster, without duplicates."""
    if not types and not uids:
        raise InvalidArgumentError("give the nodes to cluster: node types, uids, or both")
    picked: dict[str, tuple[str, np.ndarray]] = {}
    for node_type in model.types(space, tuple(types)) if types else ():
        entry = model.indexes[(space, node_type)]
        if len(picked) + len(entry.rows) > MAX_CLUSTER_NODES:
            raise ResourceExhaustedError(
                f"at most {MAX_CLUSTER_NODES} nodes can be clustered in one call"
            )
        names = model.run.uids[node_type]
        for position, row in enumerate(entry.rows.tolist()):
            picked[names[row]] = (node_type, entry.vectors[position])
    for uid in uids:
        if uid not in picked:
            picked[uid] = (model.node(uid)[0], model.vector(space, uid)[0])
    if len(picked) > MAX_CLUSTER_NODES:
        raise ResourceExhaustedError(
            f"at most {MAX_CLUSTER_NODES} nodes can be clustered in one call"
        )
    if len(picked) < 2:
        raise InvalidArgumentError(f"clustering needs at least 2 nodes, got {len(picked)}")
    node_uids = list(picked)
    node_types = [t for t, _ in picked.values()]
    vectors = np.stack([v for _, v in picked.values()]).astype(np.float32)
    return node_uids, node_types, vectors


def _kmeans(vectors: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if clusters < 2:
        raise InvalidArgumentError(f"clusters must be at least 2, got {clusters}")
    n = min(clusters, len(vectors))
    return KMeans(n_clusters=n, n_init="auto", random_state=seed).fit_predict(vectors)


def _hdbscan(vectors: np.ndarray, min_cluster_size: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    if min_cluster_size < 2:
        raise InvalidArgumentError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    size = min(min_cluster_size, len(vectors))
    return HDBSCAN(min_cluster_size=size, copy=True).fit_predict(vectors)


def _communities(vectors: np.ndarray, neighbors: int, seed: int) -> np.ndarray:
    """Louvain communities of the kNN graph, edges weighted by cosine similarity (floored at a
    small positive weight, as modularity needs)."""
    import networkx as nx

    k = min(neighbors + 1, len(vectors))
    scores, rows = VectorIndex.build(vectors).search(vectors, k)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(vectors)))
    for i in range(len(vectors)):
        for score, j in zip(scores[i].tolist(), rows[i].tolist(), strict=True):
            if j != i and j >= 0:
                graph.add_edge(i, j, weight=max(score, 1e-6))
    labels = np.empty(len(vectors), dtype=np.int64)
    for label, members in enumerate(
        nx.community.louvain_communities(graph, weight="weight", seed=seed)
    ):
        labels[list(members)] = label
    return labels


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by size (0 the largest, ties by first member); -1 stays noise."""
    labels = np.asarray(labels, dtype=np.int64)
    ids, first, counts = np.unique(labels[labels >= 0], return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    mapping = {int(ids[i]): new for new, i in enumerate(order)}
    return np.array([mapping.get(int(x), -1) for x in labels], dtype=np.int64)


def _summaries(
    model: ActiveModel,
    vectors: np.ndarray,
    uids: list[str],
    types: list[str],
    labels: np.ndarray,
    top: int,
) -> list[ClusterSummary]:
    summaries = []
    for label in range(int(labels.max()) + 1 if len(labels) else 0):
        members = np.flatnonzero(labels == label)
        centroid = vectors[members].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        scores = vectors[members] @ centroid
        best = members[np.argsort(-scores, kind="stable")[:top]]
        central = [
            Hit(uids[i], types[i], float(vectors[i] @ centroid), _display(model, uids[i]))
            for i in best.tolist()
        ]
        summaries.append(ClusterSummary(label, len(members), central))
    return summaries


def _display(model: ActiveModel, uid: str) -> str:
    node_type, row = model.node(uid)
    return model.display[node_type][row]
