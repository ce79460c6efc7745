"""Reads the service makes while answering: display texts of a model's nodes, the common
neighbours of a clustering's groups, and what explains an answer (the neighbours two nodes share,
the peers that already have a predicted link)."""

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


def shared_neighbours(
    store: GraphStore, pairs: list[tuple[str, str]], top: int = 10
) -> dict[tuple[str, str], list[tuple[str, int, list[str]]]]:
    """For each ``(a, b)`` of ``pairs``, the nodes linked to both (either direction), grouped
    by the relationship type that links them to ``a``: ``(relation, count, up to top uids)``,
    most shared first; in one query. Results written back for analysts are not links."""
    records = store.read(
        "UNWIND $pairs AS pair "
        "MATCH (a:Entity {uid: pair.a})-[r]-(m:Entity)--(b:Entity {uid: pair.b}) "
        "WHERE NOT type(r) IN $derived AND m <> a AND m <> b "
        "WITH pair, type(r) AS relation, collect(DISTINCT m.uid) AS shared "
        "RETURN pair.a AS a, pair.b AS b, relation, size(shared) AS n, shared[..$top] AS uids "
        "ORDER BY n DESC, relation",
        pairs=Rows({"a": a, "b": b} for a, b in pairs),
        derived=sorted(DERIVED_RELATIONSHIPS),
        top=top,
    )
    out: dict[tuple[str, str], list[tuple[str, int, list[str]]]] = defaultdict(list)
    for record in records:
        out[(record["a"], record["b"])].append((record["relation"], record["n"], record["uids"]))
    return dict(out)


def link_peers(
    store: GraphStore, src: str, relation: str, targets: list[str], top: int = 5
) -> dict[str, list[tuple[str, int]]]:
    """For each target ``t``, the nodes that already have a ``relation`` link to ``t`` and share
    neighbours with ``src``, with how many they share, most first (at most ``top``): the
    evidence a collaborative reading of the graph gives for ``src -[relation]-> t``."""
    records = store.read(
        "MATCH (s:Entity {uid: $src})-[r]-(m:Entity) WHERE NOT type(r) IN $derived "
        "WITH s, collect(DISTINCT m) AS around "
        "UNWIND $targets AS target "
        "MATCH (p:Entity)-[link]->(t:Entity {uid: target}) "
        "WHERE type(link) = $relation AND p <> s "
        "WITH target, p, size([(p)--(m) WHERE m IN around | m]) AS shared "
        "WHERE shared > 0 "
        "WITH target, p.uid AS peer, shared ORDER BY shared DESC, peer "
        "RETURN target, collect([peer, shared])[..$top] AS peers",
        src=src,
        relation=relation,
        targets=targets,
        derived=sorted(DERIVED_RELATIONSHIPS),
        top=top,
    )
    return {r["target"]: [(uid, int(n)) for uid, n in r["peers"]] for r in records}
