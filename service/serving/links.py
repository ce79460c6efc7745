"""Link prediction from the active model: the most likely new links of a node, and the
probability of given pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.graph.store import GraphStore
from mmgraph.service.serving.deadline import NO_DEADLINE, Deadline
from mmgraph.service.serving.options import DEFAULT_K, MAX_PAIRS, check_k
from mmgraph.service.serving.registry import ActiveModel


@dataclass(frozen=True)
class Link:
    """A predicted or scored link and its probability."""

    src: str
    dst: str
    dst_type: str
    probability: float
    display: str


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
