"""Reads the service makes while answering: display texts of a model's nodes and the common
neighbours of a clustering's groups."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from mmgraph.graph.schema import DERIVED_RELATIONSHIPS
from mmgraph.graph.store import GraphStore, Rows


def display_texts(store: GraphStore, node_type: str, length: int = 80) -> dict[str, str]:
    """Each ``node_type`` node's text cut to ``length`` characters, by uid (text-less nodes
    are absent): the short display field of the service's answers, read once per model."""
    records = store.read(
        "MATCH (n:Entity) WHERE n.type = $type AND n.text IS NOT NULL "
        "RETURN n.uid AS uid, left(n.text, $length) AS text",
        type=node_type,
        length=length,
    )
    return {r["uid"]: r["text"] for r in records}


def common_neighbours(
    store: GraphStore, groups: dict[str, int], top: int, length: int = 80
) -> dict[int, list[dict[str, Any]]]:
    """For each group of nodes (``groups`` maps a uid to its group id), the ``top`` nodes
    most linked to its members per relationship type, either direction, as dicts
    ``relation, uid, type, display, count`` (most links first); in one query."""
    records = store.read(
        "UNWIND $rows AS row "
        "MATCH (n:Entity {uid: row.uid})-[r]-(m:Entity) WHERE NOT type(r) IN $derived "
        "WITH row.group AS grp, type(r) AS relation, m, count(*) AS links "
        "ORDER BY links DESC, m.uid "
        "WITH grp, relation, collect({uid: m.uid, type: m.type, "
        "display: coalesce(left(m.text, $length), ''), count: links})[..$top] AS best "
        "RETURN grp, relation, best ORDER BY grp, relation",
        rows=Rows({"uid": uid, "group": group} for uid, group in groups.items()),
        top=top,
        length=length,
        derived=sorted(DERIVED_RELATIONSHIPS),
    )
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        for neighbour in record["best"]:
            out[record["grp"]].append({"relation": record["relation"], **neighbour})
    return dict(out)
