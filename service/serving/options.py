"""The service's limits and the options of its queries, shared by both doors (the CLI lists them
in its help, so nothing here imports torch or the index)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mmgraph.core.errors import InvalidArgumentError

MAX_K = 1000
DEFAULT_K = 10
MAX_CLUSTER_NODES = 100_000
MAX_PAIRS = 100_000
Method = Literal["kmeans", "hdbscan", "community"]
METHODS: tuple[Method, ...] = ("kmeans", "hdbscan", "community")


def check_k(k: int, name: str = "k", default: int = DEFAULT_K, maximum: int = MAX_K) -> int:
    """``k`` (``default`` when 0) if it is between 1 and ``maximum``, else raise."""
    k = k or default
    if not 1 <= k <= maximum:
        raise InvalidArgumentError(f"{name} must be between 1 and {maximum}, got {k}")
    return k


@dataclass(frozen=True)
class ClusterOptions:
    """How to cluster: ``kmeans`` (``clusters``, default 8), ``hdbscan`` (``min_cluster_size``,
    default 5; label -1 is noise) or ``community`` (Louvain on the kNN graph of ``neighbors`` per
    node, default 10), in embedding ``space`` ("" is fused), summarising each cluster by its
    ``top`` members and neighbours (default 5); 0 means the default."""

    method: Method = "kmeans"
    clusters: int = 0
    min_cluster_size: int = 0
    neighbors: int = 0
    space: str = ""
    top: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgumentError(
                f"method must be one of {list(METHODS)}, got {self.method!r}"
            )
