"""Results written back into the graph for analysts' Cypher: the promoted model's embeddings
(``emb`` with the vector index ``entity_emb`` and a ``(:Model)`` node), clusters
(``(:Cluster)<-[:IN_CLUSTER]-``) and predicted links (``[:PREDICTED]``).

Written-back results never mix with the graph's own relationships: they have their own reserved
types (:data:`~mmgraph.graph.schema.DERIVED_RELATIONSHIPS`), which export and counts leave out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import neo4j
import numpy as np

from mmgraph.graph.schema import check_type_name
from mmgraph.graph.store import GraphStore, MissingEndpointError, Rows, StoreError

EMB_INDEX = "entity_emb"
# ``setNodeVectorProperty`` stores a float32 array, which is what the vector index reads.
_WRITE_EMBEDDINGS = """
UNWIND $rows AS row
MATCH (n:Entity {uid: row.uid})
CALL db.create.setNodeVectorProperty(n, 'emb', row.v)
SET n.emb_model = $model
RETURN count(n) AS n
"""
_CLEAR_EMBEDDINGS = """
MATCH (n:Entity) WHERE n.emb IS NOT NULL AND ($model IS NULL OR n.emb_model <> $model)
CALL (n) { REMOVE n.emb, n.emb_model } IN TRANSACTIONS OF 10000 ROWS
"""


def write_embeddings(
    store: GraphStore,
    model_id: str,
    uids: Sequence[str],
    vectors: np.ndarray,
    batch_size: int = 2000,
) -> int:
    """Set ``emb`` (a float32 vector property, the form Neo4j's vector index reads) and
    ``emb_model`` on the nodes with these uids, in batches; return how many were set."""
    written = 0
    for start in range(0, len(uids), batch_size):
        rows = Rows(
            {"uid": uid, "v": vector.tolist()}
            for uid, vector in zip(
                uids[start : start + batch_size],
                np.asarray(vectors[start : start + batch_size], dtype=np.float32),
                strict=True,
            )
        )
        with store.session() as session:
            written += session.execute_write(
                lambda tx, rows=rows: tx.run(_WRITE_EMBEDDINGS, rows=rows, model=model_id).single(
                    strict=True
                )["n"]
            )
    return written


def clear_embeddings(store: GraphStore, keep_model: str | None = None) -> None:
    """Remove ``emb`` from every node whose embedding is not ``keep_model``'s."""
    with store.session() as session:
        session.run(_CLEAR_EMBEDDINGS, model=keep_model).consume()


def ensure_vector_index(store: GraphStore, dimension: int) -> None:
    """A cosine vector index ``entity_emb`` on ``:Entity(emb)`` of ``dimension`` (recreated
    when the existing one has another dimension), online before this returns."""
    dimension = int(dimension)
    records = store.read(
        "SHOW INDEXES YIELD name, options WHERE name = $name RETURN options", name=EMB_INDEX
    )
    if records:
        config = (records[0]["options"] or {}).get("indexConfig", {})
        if config.get("vector.dimensions") == dimension:
            return
        store.write(f"DROP INDEX {EMB_INDEX}")
    store.write(
        f"CREATE VECTOR INDEX {EMB_INDEX} IF NOT EXISTS FOR (n:Entity) ON (n.emb) "
        f"OPTIONS {{indexConfig: {{`vector.dimensions`: {dimension}, "
        "`vector.similarity_function`: 'cosine'}}"
    )
    with store.session() as session:
        session.run("CALL db.awaitIndexes(300)").consume()


def record_model(store: GraphStore, model_id: str, props: dict[str, Any]) -> None:
    """Keep a ``:Model {id}`` node with ``props`` and mark it the active one."""
    store.write(
        "MERGE (m:Model {id: $id}) SET m += $props, m.promoted = $now, m.active = true "
        "WITH m MATCH (o:Model) WHERE o.id <> $id SET o.active = false",
        id=model_id,
        props=props,
        now=datetime.now(UTC),
    )


def write_clusters(
    store: GraphStore,
    run_id: str,
    method: str,
    assignments: dict[str, int],
    summaries: dict[int, dict[str, Any]] | None = None,
) -> int:
    """Write a clustering of model ``run_id``'s nodes by ``method`` for Cypher to read.

    Each cluster ``k`` becomes ``(:Cluster {id: "<run>/<method>/<k>", run, method, cluster,
    size})`` with ``summaries[k]``'s properties added, and each member (``assignments`` maps
    a uid to its cluster; -1 is noise and gets none) an ``(:Entity)-[:IN_CLUSTER]->`` to it.
    That run and method's previous clusters are removed in the same transaction, so a rerun
    replaces them; a uid not in the graph fails the whole write. Returns the clusters written.
    """
    if not isinstance(method, str) or not method:
        raise StoreError(f"method must be a non-empty string, got {method!r}")
    members: dict[int, list[str]] = defaultdict(list)
    for uid, label in assignments.items():
        if int(label) >= 0:
            members[int(label)].append(uid)
    summaries = summaries or {}
    clusters = Rows(
        {
            "id": f"{run_id}/{method}/{k}",
            "cluster": k,
            "size": len(uids),
            "members": uids,
            "props": dict(summaries.get(k, {})),
        }
        for k, uids in sorted(members.items())
    )
    expected = sum(len(uids) for uids in members.values())

    def work(tx: neo4j.ManagedTransaction) -> None:
        tx.run(
            "MATCH (c:Cluster {run: $run, method: $method}) DETACH DELETE c",
            run=run_id,
            method=method,
        ).consume()
        written = tx.run(
            "UNWIND $clusters AS row "
            "CREATE (c:Cluster) SET c += row.props, c.id = row.id, c.run = $run, "
            "c.method = $method, c.cluster = row.cluster, c.size = row.size "
            "WITH c, row UNWIND row.members AS uid "
            "MATCH (n:Entity {uid: uid}) CREATE (n)-[:IN_CLUSTER]->(c) "
            "RETURN count(*) AS n",
            clusters=clusters,
            run=run_id,
            method=method,
        ).single(strict=True)["n"]
        if written != expected:
            raise MissingEndpointError(
                f"{expected - written} cluster member(s) are not nodes of the graph"
            )

    with store.session() as session:
        session.execute_write(work)
    return len(clusters)


def write_predicted_links(
    store: GraphStore,
    run_id: str,
    relation: str,
    links: Sequence[tuple[str, str, float]],
    sources: Iterable[str] | None = None,
) -> int:
    """Write each ``(src uid, dst uid, score)`` of model ``run_id`` as
    ``(src)-[:PREDICTED {relation, score, model}]->(dst)``: the type is always ``PREDICTED``,
    so a prediction never passes for a real ``relation`` link.

    The model's previous ``relation`` predictions from ``sources`` (default: the links'
    sources) are removed in the same transaction, so a rerun replaces them; an endpoint not
    in the graph fails the whole write. Returns the links written.
    """
    relation = check_type_name(relation)
    rows = Rows({"src": s, "dst": d, "score": float(p)} for s, d, p in links)
    if not all(np.isfinite(row["score"]) for row in rows):
        raise StoreError("every predicted link's score must be a finite number")
    starts = sorted(set(sources) if sources is not None else {row["src"] for row in rows})

    def work(tx: neo4j.ManagedTransaction) -> int:
        tx.run(
            "UNWIND $sources AS uid "
            "MATCH (:Entity {uid: uid})-[p:PREDICTED {model: $model, relation: $relation}]->() "
            "DELETE p",
            sources=starts,
            model=run_id,
            relation=relation,
        ).consume()
        written = tx.run(
            "UNWIND $rows AS row "
            "MATCH (a:Entity {uid: row.src}) MATCH (b:Entity {uid: row.dst}) "
            "CREATE (a)-[:PREDICTED {relation: $relation, score: row.score, model: $model}]"
            "->(b) "
            "RETURN count(*) AS n",
            rows=rows,
            model=run_id,
            relation=relation,
        ).single(strict=True)["n"]
        if written != len(rows):
            raise MissingEndpointError(
                f"{len(rows) - written} predicted link(s) name an endpoint not in the graph"
            )
        return written

    with store.session() as session:
        return session.execute_write(work)
