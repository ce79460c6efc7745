"""Why an answer came back: the neighbours two nodes share in the graph (read now, by
relationship type), the peers that already have a predicted link, and, for a model that weighs
modalities per node (MGAT), the modality weights of both ends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mmgraph.graph.lookups import link_peers, shared_neighbours
from mmgraph.graph.store import GraphStore
from mmgraph.service.serving.registry import ActiveModel


@dataclass(frozen=True)
class SharedNeighbours:
    """Nodes one relationship type links to both ends: how many, and some of their uids."""

    relation: str
    count: int
    uids: list[str]


@dataclass(frozen=True)
class Explanation:
    """What explains one answer (see the module); empty parts do not apply."""

    shared: list[SharedNeighbours] = field(default_factory=list)
    query_weights: dict[str, float] = field(default_factory=dict)
    hit_weights: dict[str, float] = field(default_factory=dict)
    peers: list[tuple[str, int]] = field(default_factory=list)


def explain_pairs(
    model: ActiveModel, store: GraphStore, source: str | None, found: Sequence[str]
) -> list[Explanation]:
    """An explanation of each node in ``found`` as an answer about ``source`` (a node's uid, or
    ``None`` for a raw text or picture query, which shares nothing with the graph)."""
    shared = shared_neighbours(store, [(source, uid) for uid in found]) if source else {}
    query = _weights(model, source) if source else {}
    return [
        Explanation(
            shared=[SharedNeighbours(*row) for row in shared.get((source, uid), [])],
            query_weights=query,
            hit_weights=_weights(model, uid),
        )
        for uid in found
    ]


def explain_links(
    model: ActiveModel, store: GraphStore, source: str, relation: str, targets: Sequence[str]
) -> list[Explanation]:
    """:func:`explain_pairs` of predicted ``relation`` links from ``source``, with each target's
    peers: nodes that have the link and share neighbours with the source."""
    peers = link_peers(store, source, relation, list(targets))
    return [
        Explanation(e.shared, e.query_weights, e.hit_weights, peers.get(target, []))
        for e, target in zip(explain_pairs(model, store, source, targets), targets, strict=True)
    ]


def _weights(model: ActiveModel, uid: str) -> dict[str, float]:
    node_type, row = model.node(uid)
    return model.run.modality_weights(node_type, row)
