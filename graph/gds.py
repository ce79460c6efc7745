"""FastRP node embeddings from Open GDS (Graph Data Science), computed inside Neo4j.

An outside anchor row for the evaluation: the same training edges our models see, embedded by
Neo4j's own FastRP. Optional: nothing in mmgraph requires GDS, since a user's server may lack it;
the local Neo4j offers it only when started with ``gds=True`` (``mmgraph neo4j start --gds``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from mmgraph.core.errors import FailedPreconditionError, InvalidArgumentError
from mmgraph.graph.store import GraphStore, UnknownNodeError

__all__ = [
    "FastRPArgumentError",
    "GdsUnavailableError",
    "fastrp_embeddings",
    "gds_available",
]


class GdsUnavailableError(FailedPreconditionError):
    """The Neo4j in use has no Graph Data Science plugin (no ``gds.*`` procedures)."""


class FastRPArgumentError(InvalidArgumentError):
    """A FastRP argument is out of range or the edges name nodes not given."""


_HAS_GDS = "SHOW FUNCTIONS YIELD name WHERE name = 'gds.version' RETURN count(*) > 0 AS present"

# Every given node (isolated ones too) as a row with no target, then every edge; projected as one
# undirected relationship type so that FastRP sees each edge from both ends.
_PROJECT = """
CALL {
  UNWIND $nodes AS uid
  MATCH (source:Entity {uid: uid})
  RETURN source, null AS target
  UNION ALL
  UNWIND $edges AS edge
  MATCH (source:Entity {uid: edge[0]})
  MATCH (target:Entity {uid: edge[1]})
  RETURN source, target
}
WITH gds.graph.project(
  $graph, source, target, {},
  {undirectedRelationshipTypes: ['*'], readConcurrency: $concurrency}
) AS projected
RETURN projected.nodeCount AS nodes
"""

_FASTRP = """
CALL gds.fastRP.stream($graph, $config) YIELD nodeId, embedding
RETURN gds.util.asNode(nodeId).uid AS uid, embedding
"""

_DROP = "CALL gds.graph.drop($graph, false) YIELD graphName RETURN graphName"


def gds_available(store: GraphStore) -> bool:
    """Whether the store's Neo4j offers GDS (its ``gds.version()`` function exists)."""
    with store.session() as session:
        return bool(session.run(_HAS_GDS).single(strict=True)["present"])


def fastrp_embeddings(
    store: GraphStore,
    edges: Sequence[tuple[str, str]] | np.ndarray,
    nodes: Sequence[str],
    *,
    dim: int = 128,
    iteration_weights: Sequence[float] = (0.0, 1.0, 1.0),
    normalization_strength: float = 0.0,
    seed: int = 42,
    concurrency: int = 1,
) -> tuple[list[str], np.ndarray]:
    """FastRP embeddings of ``nodes`` over exactly the undirected ``edges``, computed by GDS.

    The graph GDS sees is projected from the given uid pairs only (other relationships in the
    store are ignored; ``(a, b)`` and ``(b, a)`` count once); every node in ``nodes`` is in it,
    with or without edges. The projection lives in GDS's catalog only for this call.

    Args:
        store (GraphStore): the store whose Neo4j runs GDS and holds the ``:Entity`` nodes.
        edges (sequence of (str, str) or numpy.ndarray): ``(E, 2)`` uid pairs, e.g. the
            training edges of a split; both ends must be in ``nodes``.
        nodes (sequence of str): the distinct uids to embed.
        dim (int, optional): embedding dimension. (default: :obj:`128`)
        iteration_weights (sequence of float, optional): weight of each propagation step's
            embedding in the sum; the first weighs the random start. (default: ``(0, 1, 1)``)
        normalization_strength (float, optional): degree normalisation exponent.
            (default: :obj:`0.0`)
        seed (int, optional): random seed; the same seed gives the same vectors.
            (default: :obj:`42`)
        concurrency (int, optional): GDS threads; more than one is 5-13x slower on small
            machines (measured on 2 cores). (default: :obj:`1`)

    Returns:
        ``(uids, matrix)``: ``uids`` is ``list(nodes)`` and row ``i`` of the ``float32``
        matrix of shape ``(len(nodes), dim)`` is the embedding of ``uids[i]``.

    Raises:
        GdsUnavailableError: the store's Neo4j has no GDS.
        FastRPArgumentError: a bad argument, duplicate nodes, or an edge end not in ``nodes``.
        UnknownNodeError: a uid of ``nodes`` is not in the graph.
    """
    uids = _check_nodes(nodes)
    pairs = _undirected_pairs(edges, set(uids))
    config = _fastrp_config(dim, iteration_weights, normalization_strength, seed, concurrency)
    if not gds_available(store):
        raise GdsUnavailableError(
            "the Neo4j in use has no Graph Data Science plugin (gds.* procedures); for the local "
            "one, restart it with `mmgraph neo4j stop` and `mmgraph neo4j start --gds`"
        )
    graph = f"mmgraph-fastrp-{uuid.uuid4().hex}"
    with store.session() as session:
        try:
            session.run(
                _PROJECT, graph=graph, nodes=uids, edges=pairs, concurrency=concurrency
            ).consume()
            vectors = {
                r["uid"]: r["embedding"] for r in session.run(_FASTRP, graph=graph, config=config)
            }
        finally:
            session.run(_DROP, graph=graph).consume()
    missing = [uid for uid in uids if uid not in vectors]
    if missing:
        raise UnknownNodeError(
            f"{len(missing)} of the given nodes are not in the graph, e.g. {missing[0]!r}"
        )
    matrix = np.asarray([vectors[uid] for uid in uids], dtype=np.float32).reshape(len(uids), dim)
    return uids, matrix


def _check_nodes(nodes: Sequence[str]) -> list[str]:
    uids = [str(uid) for uid in nodes]
    if not uids:
        raise FastRPArgumentError("nodes must not be empty")
    if len(set(uids)) != len(uids):
        raise FastRPArgumentError(f"nodes holds duplicate uids ({len(uids) - len(set(uids))})")
    return uids


def _undirected_pairs(edges: Sequence[tuple[str, str]] | np.ndarray, known: set[str]) -> list:
    """The edges as ``[a, b]`` lists, each undirected pair once, in first-seen order."""
    array = np.asarray(edges, dtype=object)
    if array.size == 0:
        return []
    if array.ndim != 2 or array.shape[1] != 2:
        raise FastRPArgumentError(f"edges must be (E, 2) uid pairs, got shape {array.shape}")
    pairs: dict[tuple[str, str], None] = {}
    for a, b in array:
        a, b = str(a), str(b)
        pairs[(a, b) if a <= b else (b, a)] = None
    stray = next((u for pair in pairs for u in pair if u not in known), None)
    if stray is not None:
        raise FastRPArgumentError(f"edges name {stray!r}, which is not in nodes")
    return [list(pair) for pair in pairs]


def _fastrp_config(
    dim: int,
    iteration_weights: Sequence[float],
    normalization_strength: float,
    seed: int,
    concurrency: int,
) -> dict[str, Any]:
    if dim < 1:
        raise FastRPArgumentError(f"dim must be at least 1, got {dim}")
    if not iteration_weights:
        raise FastRPArgumentError("iteration_weights must not be empty")
    if concurrency < 1:
        raise FastRPArgumentError(f"concurrency must be at least 1, got {concurrency}")
    return {
        "embeddingDimension": int(dim),
        "iterationWeights": [float(w) for w in iteration_weights],
        "normalizationStrength": float(normalization_strength),
        "randomSeed": int(seed),
        "concurrency": int(concurrency),
    }
