"""What the service answers, independent of gRPC: similarity search, clustering, link prediction.

Each function takes the :class:`~mmgraph.service.registry.ActiveModel` a call got (so a model switch
mid-call cannot mix two models) and a :class:`Deadline` it checks before every expensive step.
Arguments are validated here, raising the :mod:`mmgraph.core.errors` kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmgraph.core.errors import InvalidArgumentError, ResourceExhaustedError
from mmgraph.graph.store import GraphStore
from mmgraph.service.errors import DeadlineExceededError
from mmgraph.service.index import VectorIndex
from mmgraph.service.registry import ActiveModel

MAX_K = 1000
DEFAULT_K = 10
MAX_CLUSTER_NODES = 100_000
MAX_PAIRS = 100_000
Method = Literal["kmeans", "hdbscan", "community"]
METHODS: tuple[Method, ...] = ("kmeans", "hdbscan", "community")


class Deadline:
    """Raises :class:`DeadlineExceededError` once no time is left.

    Args:
        remaining: returns the seconds left, or ``None`` when there is no deadline (such as
            ``grpc.ServicerContext.time_remaining``).
    """

    def __init__(self, remaining: Callable[[], float | None] = lambda: None) -> None:
        self.remaining = remaining

    def check(self, step: str) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceededError(f"the call's deadline passed before {step}")


NO_DEADLINE = Deadline()


@dataclass(frozen=True)
class Hit:
    """A node found: uid, type, score and a short text to show."""

    uid: str
    type: str
    score: float
    display: str


@dataclass(frozen=True)
class Link:
    """A predicted or scored link and its probability."""

    src: str
    dst: str
    dst_type: str
    probability: float
    display: str


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


def check_k(k: int, name: str = "k", default: int = DEFAULT_K, maximum: int = MAX_K) -> int:
    """``k`` (``default`` when 0) if it is between 1 and ``maximum``, else raise."""
    k = k or default
    if not 1 <= k <= maximum:
        raise InvalidArgumentError(f"{name} must be between 1 and {maximum}, got {k}")
    return k


# -- Similar ------------------------------------------------------------------------------------


def similar_to_node(
    model: ActiveModel,
    uid: str,
    k: int = DEFAULT_K,
    types: Sequence[str] = (),
    space: str = "",
    deadline: Deadline = NO_DEADLINE,
) -> list[Hit]:
    """The ``k`` nodes nearest to node ``uid`` (itself excluded) in ``space``."""
    k = check_k(k)
    space = model.space(space)
    wanted = model.types(space, tuple(types))
    query = model.vector(space, uid)
    own_type, _ = model.node(uid)
    deadline.check("the search")
    found = []
    for node_type in wanted:
        entry = model.indexes[(space, node_type)]
        scores, positions = entry.index.search(query, k + (node_type == own_type))
        rows = entry.rows[positions[0][positions[0] >= 0]]
        scores = scores[0][: len(rows)]
        uids = model.run.uids[node_type]
        keep = np.fromiter((uids[r] != uid for r in rows), dtype=bool, count=len(rows))
        found.append((node_type, scores[keep][:k], rows[keep][:k]))
    return _merge(model, found, k)


def similar_to_vector(
    model: ActiveModel,
    modality: str,
    vector: np.ndarray,
    k: int = DEFAULT_K,
    types: Sequence[str] = (),
    space: str = "",
    deadline: Deadline = NO_DEADLINE,
) -> list[Hit]:
    """The ``k`` nodes nearest to a raw encoder vector of ``modality`` (``(1, d)``), mapped into
    ``space`` as if it were each searched type's input.

    Types the model cannot map ``modality`` into are skipped when ``types`` is empty; named ones
    raise :class:`InvalidArgumentError`.
    """
    k = check_k(k)
    space = model.space(space)
    wanted = model.types(space, tuple(types))
    found = []
    refusals = []
    for node_type in wanted:
        deadline.check("the search")
        try:
            query = model.run.embed_query(node_type, modality, vector, space)
        except InvalidArgumentError as e:
            if types:
                raise
            refusals.append(str(e))
            continue
        entry = model.indexes[(space, node_type)]
        scores, positions = entry.index.search(query, k)
        valid = positions[0] >= 0
        found.append((node_type, scores[0][valid], entry.rows[positions[0][valid]]))
    if not found:
        raise InvalidArgumentError(
            f"model {model.run_id} cannot map a {modality} query into space {space!r} for any "
            f"node type: {'; '.join(refusals)}"
        )
    return _merge(model, found, k)


def _merge(
    model: ActiveModel, found: list[tuple[str, np.ndarray, np.ndarray]], k: int
) -> list[Hit]:
    """The ``k`` best of per-type (type, scores, node rows) results, best first."""
    if not found:
        return []
    scores = np.concatenate([s for _, s, _ in found])
    best = np.argsort(-scores, kind="stable")[:k]
    bounds = np.cumsum([0] + [len(s) for _, s, _ in found])
    part = np.searchsorted(bounds, best, side="right") - 1
    hits = []
    for i, p in zip(best.tolist(), part.tolist(), strict=True):
        node_type, _, rows = found[p]
        row = int(rows[i - bounds[p]])
        hits.append(
            Hit(
                model.run.uids[node_type][row],
                node_type,
                float(scores[i]),
                model.display[node_type][row],
            )
        )
    return hits


# -- Cluster ------------------------------------------------------------------------------------


def cluster(
    model: ActiveModel,
    store: GraphStore,
    *,
    types: Sequence[str] = (),
    uids: Sequence[str] = (),
    method: Method = "kmeans",
    clusters: int = 0,
    min_cluster_size: int = 0,
    neighbors: int = 0,
    space: str = "",
    top: int = 0,
    seed: int = 0,
    deadline: Deadline = NO_DEADLINE,
) -> Clustering:
    """Cluster the nodes of ``types`` and ``uids`` in ``space`` and summarise each cluster.

    Methods: ``kmeans`` (``clusters``, default 8), ``hdbscan`` (``min_cluster_size``, default 5;
    label -1 is noise) and ``community`` (Louvain on the kNN graph of ``neighbors`` per node,
    default 10). Cluster ids are renumbered by size, 0 the largest.
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {list(METHODS)}, got {method!r}")
    top = check_k(top, "top", default=5, maximum=100)
    space = model.space(space)
    node_uids, node_types, vectors = _node_set(model, space, types, uids)
    deadline.check("clustering")
    if method == "kmeans":
        raw = _kmeans(vectors, check_k(clusters, "clusters", default=8, maximum=10_000), seed)
    elif method == "hdbscan":
        size = check_k(min_cluster_size, "min_cluster_size", default=5, maximum=MAX_CLUSTER_NODES)
        raw = _hdbscan(vectors, size)
    else:
        raw = _communities(vectors, check_k(neighbors, "neighbors", default=10), seed)
    labels = _by_size(raw)
    summaries = _summaries(model, vectors, node_uids, node_types, labels, top)
    deadline.check("reading the clusters' neighbours")
    groups = {uid: int(label) for uid, label in zip(node_uids, labels, strict=True) if label >= 0}
    neighbours = store.common_neighbours(groups, top)
    for summary in summaries:
        summary.neighbours = neighbours.get(summary.cluster, [])
    return Clustering(node_uids, node_types, labels, summaries, method)


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


# -- Links --------------------------------------------------------------------------------------


def _edge_types(
    model: ActiveModel, src_type: str, relation: str, dst_type: str = ""
) -> list[tuple[str, str, str]]:
    """The model's edge types from ``src_type`` by ``relation`` (to ``dst_type`` if given)."""
    found = [
        e
        for e in model.run.relations
        if e[0] == src_type and e[1] == relation and (not dst_type or e[2] == dst_type)
    ]
    if not found:
        known = sorted(f"{s}-{r}->{d}" for s, r, d in model.run.relations if s == src_type)
        target = f" to {dst_type}" if dst_type else ""
        raise InvalidArgumentError(
            f"model {model.run_id} cannot score {relation!r} links from a {src_type}{target}; "
            f"it scores {known or 'no links from that type'}"
        )
    return found


def predict_links(
    model: ActiveModel,
    store: GraphStore,
    uid: str,
    relation: str,
    k: int = DEFAULT_K,
    dst_type: str = "",
    deadline: Deadline = NO_DEADLINE,
) -> list[Link]:
    """The ``k`` most likely new ``relation`` links from node ``uid``; links in the graph (read
    from it now) and the node itself are excluded."""
    k = check_k(k)
    src_type, src_row = model.node(uid)
    edge_types = _edge_types(model, src_type, relation, dst_type)
    deadline.check("reading the node's links")
    existing = {dst for rel, dst, _ in store.relationships_of(uid) if rel == relation}
    found = []
    for edge_type in edge_types:
        deadline.check("scoring")
        target = edge_type[2]
        probs = np.array(model.run.score_from(edge_type, src_row), dtype=np.float64)
        skip = [
            model.nodes[d][1] for d in existing | {uid} if model.nodes.get(d, ("",))[0] == target
        ]
        probs[skip] = -np.inf
        best = np.argpartition(-probs, min(k, len(probs)) - 1)[:k] if len(probs) else []
        found.extend((float(probs[i]), target, int(i)) for i in best if np.isfinite(probs[i]))
    found.sort(key=lambda x: -x[0])
    return [
        Link(uid, model.run.uids[t][row], t, p, model.display[t][row]) for p, t, row in found[:k]
    ]


def score_links(
    model: ActiveModel,
    relation: str,
    pairs: Sequence[tuple[str, str]],
    deadline: Deadline = NO_DEADLINE,
) -> np.ndarray:
    """The probability of each (src uid, dst uid) ``relation`` link, in order."""
    if not pairs:
        raise InvalidArgumentError("give at least one (src, dst) pair to score")
    if len(pairs) > MAX_PAIRS:
        raise InvalidArgumentError(f"at most {MAX_PAIRS} pairs per call, got {len(pairs)}")
    groups: dict[tuple[str, str, str], list[tuple[int, int, int]]] = {}
    for i, (src, dst) in enumerate(pairs):
        src_type, src_row = model.node(src)
        dst_type, dst_row = model.node(dst)
        (edge_type,) = _edge_types(model, src_type, relation, dst_type)
        groups.setdefault(edge_type, []).append((i, src_row, dst_row))
    out = np.empty(len(pairs), dtype=np.float32)
    for edge_type, members in groups.items():
        deadline.check("scoring")
        idx, src_rows, dst_rows = (np.array(c, dtype=np.int64) for c in zip(*members, strict=True))
        out[idx] = model.run.score_links(edge_type, src_rows, dst_rows)
    return out
