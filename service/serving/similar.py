"""Similarity search: the nodes nearest to a node, or to a raw text or image vector mapped into
the run's space.

Each function takes the :class:`~mmgraph.service.serving.registry.ActiveModel` a call got (so a
model switch mid-call cannot mix two models) and a :class:`~.deadline.Deadline` it checks before
every expensive step. Arguments are validated here, raising the :mod:`mmgraph.core.errors` kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.service.serving.deadline import NO_DEADLINE, Deadline
from mmgraph.service.serving.options import DEFAULT_K, check_k
from mmgraph.service.serving.query_encoder import QueryEncoder
from mmgraph.service.serving.registry import ActiveModel, TypeIndex


@dataclass(frozen=True)
class Hit:
    """A node found: uid, type, score and a short text to show."""

    uid: str
    type: str
    score: float
    display: str


Candidate = tuple[float, str, int]  # (score, node type, node row)


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
    own_type, own_row = model.node(uid)
    deadline.check("the search")
    if not types and space in model.spanning:
        return merge_hits(model, _across_types(model, space, query, k, own_type, own_row), k)
    found: list[Candidate] = []
    for node_type in wanted:
        entry = model.indexes[(space, node_type)]
        own = int(entry.positions[own_row]) if node_type == own_type else -1
        scores, positions = entry.index.search(query, k + (own >= 0))
        found += _candidates(node_type, entry, scores, positions, own)
    return merge_hits(model, found, k)


def _across_types(
    model: ActiveModel, space: str, query: np.ndarray, k: int, own_type: str, own_row: int
) -> list[Candidate]:
    """The ``k`` nearest of every type to node (``own_type``, ``own_row``), itself excluded, in
    one search of the space's spanning index."""
    span = model.spanning[space]
    own = span.starts[span.types.index(own_type)]
    own += int(model.indexes[(space, own_type)].positions[own_row])
    scores, positions = span.index.search(query, k + 1)
    found = []
    for score, position in zip(scores[0].tolist(), positions[0].tolist(), strict=True):
        if position >= 0 and position != own:
            i, at = span.locate(position)
            node_type = span.types[i]
            found.append((score, node_type, model.indexes[(space, node_type)].rows.item(at)))
    return found


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
    found: list[Candidate] = []
    refusals = []
    searched = False
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
        found += _candidates(node_type, entry, scores, positions)
        searched = True
    if not searched:
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
    model.run.check_query_space(modality, model.space(space))
    deadline.check("encoding the query")
    vector = encoder.encode(modality, value, deadline)
    return similar_to_vector(model, modality, vector, k, types, space, deadline)


def _candidates(
    node_type: str,
    entry: TypeIndex,
    scores: np.ndarray,
    positions: np.ndarray,
    skip: int = -1,
) -> list[Candidate]:
    """One query's search results in ``entry`` as (score, type, node row), best first, without
    the empty slots and the index position ``skip``. Plain Python: a few rows each, where numpy's
    per-call overhead would cost more than the work."""
    rows = entry.rows
    return [
        (score, node_type, rows.item(position))
        for score, position in zip(scores[0].tolist(), positions[0].tolist(), strict=True)
        if position >= 0 and position != skip
    ]


def merge_hits(model: ActiveModel, found: list[Candidate], k: int) -> list[Hit]:
    """The ``k`` best of (score, type, node row) candidates, best first; equal scores keep the
    order they were found in."""
    best = sorted(found, key=itemgetter(0), reverse=True)[:k]
    uids, display = model.run.uids, model.display
    return [Hit(uids[t][row], t, score, display[t][row]) for score, t, row in best]
