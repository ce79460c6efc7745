"""Similarity search: the nodes nearest to a node, or to a raw text or image vector mapped into
the run's space.

Each function takes the :class:`~mmgraph.service.serving.registry.ActiveModel` a call got (so a
model switch mid-call cannot mix two models) and a :class:`~.deadline.Deadline` it checks before
every expensive step. Arguments are validated here, raising the :mod:`mmgraph.core.errors` kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.service.serving.deadline import NO_DEADLINE, Deadline
from mmgraph.service.serving.options import DEFAULT_K, check_k
from mmgraph.service.serving.query_encoder import QueryEncoder
from mmgraph.service.serving.registry import ActiveModel


@dataclass(frozen=True)
class Hit:
    """A node found: uid, type, score and a short text to show."""

    uid: str
    type: str
    score: float
    display: str


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
    return merge_hits(model, found, k)


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
    return merge_hits(model, found, k)


def similar_to_query(
    model: ActiveModel,
    encoder: QueryEncoder,
    modality: str,
    value: str | bytes,
    k: int = DEFAULT_K,
    types: Sequence[str] = (),
    space: str = "",
    deadline: Deadline = NO_DEADLINE,
) -> list[Hit]:
    """The ``k`` nodes nearest to a raw text or picture: the cheap arguments are checked before
    the encoder runs, then the query's vector is searched as :func:`similar_to_vector` does."""
    check_k(k)
    model.types(model.space(space), tuple(types))
    deadline.check("encoding the query")
    vector = encoder.encode(modality, value, deadline)
    return similar_to_vector(model, modality, vector, k, types, space, deadline)


def merge_hits(
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
