"""The Neo4j graph store: schema setup, batched upserts, reads, counts and the ingest audit trail.

All Cypher of mmgraph's graph lives here. Values always travel as parameters; the only names
put into query text are labels and relationship types that passed :mod:`mmgraph.graph.schema`.
Every write is one managed transaction (``execute_write``), which the driver retries on transient
errors and which leaves nothing behind when it fails.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import neo4j
import numpy as np

from mmgraph.core.errors import FailedPreconditionError
from mmgraph.graph.schema import (
    DERIVED_RELATIONSHIPS,
    SCHEMA_STATEMENTS,
    check_type_name,
    encoder_property,
    vector_property,
)
from mmgraph.graph.vectors import FLOAT32_LE, from_bytes, to_bytes

log = logging.getLogger(__name__)


class StoreError(FailedPreconditionError):
    """A write the store refused; the transaction it was part of was rolled back."""


class TypeConflictError(StoreError):
    """An upsert named a node with a type other than the one it is stored with."""


class MissingEndpointError(StoreError):
    """A relationship named an endpoint uid that is not in the graph."""


@dataclass(frozen=True)
class NodeRow:
    """One node to upsert: uid, type label, free properties, and per-modality vectors.

    ``vectors`` maps a modality name to ``(vector, encoder tag)``; the vector is stored as
    float32 bytes in ``<modality>_vec`` and the tag in ``<modality>_enc``.
    """

    uid: str
    type: str
    props: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, tuple[Any, str]] = field(default_factory=dict)

    def properties(self) -> dict[str, Any]:
        """All properties to set, vectors packed as bytes."""
        out = dict(self.props)
        for modality, (vector, tag) in self.vectors.items():
            out[vector_property(modality)] = to_bytes(vector)
            out[encoder_property(modality)] = tag
        return out


@dataclass(frozen=True)
class RelRow:
    """One relationship to upsert, merged on (src, type, dst)."""

    src: str
    dst: str
    type: str
    weight: float = 1.0
    props: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """What one write transaction did."""

    nodes_written: int = 0
    nodes_created: int = 0
    relationships_written: int = 0
    relationships_created: int = 0


@dataclass(frozen=True)
class GraphCounts:
    """Nodes by type label and relationships by type (the shape of ``mmgraph stats --json``)."""

    nodes: dict[str, int]
    relationships: dict[str, int]

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {"nodes": dict(self.nodes), "relationships": dict(self.relationships)}


@dataclass(frozen=True)
class NodeState:
    """What an upsert needs to know of a stored node: its type and what its vectors were made of.

    ``encoders`` maps each modality to its encoder tag; ``text`` and ``image_ref`` are the inputs
    of the text and image vectors, so unchanged ones need not be encoded again.
    """

    type: str
    encoders: dict[str, str]
    text: str | None = None
    image_ref: str | None = None


@dataclass(frozen=True)
class StoredNode:
    """A node as read back: uid, type, free properties and decoded modality vectors."""

    uid: str
    type: str
    props: dict[str, Any]
    vectors: dict[str, tuple[Any, str]]


class _Rows(list):
    """Query rows whose ``repr`` is short.

    neo4j-python-driver builds its DEBUG line for every RUN eagerly, ``repr`` of all parameters
    included, even with DEBUG off: for a batch of vectors that string cost ~20% of a write.
    """

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


def _quote(name: str) -> str:
    """Backtick-quote a name read from the database itself (never from input)."""
    return "`" + name.replace("`", "``") + "`"


# A row whose uid is stored with another type is returned; the caller then fails the whole
# transaction, so the properties it set on that node never land.
_UPSERT_NODES = """
UNWIND $rows AS row
MERGE (n:Entity {uid: row.uid})
ON CREATE SET n:%s, n.type = row.type, n.source = $run_id
SET n += row.props
WITH n, row WHERE n.type <> row.type
RETURN row.uid AS uid, n.type AS stored
"""

_UPSERT_RELS = """
UNWIND $rows AS row
MATCH (a:Entity {uid: row.src})
MATCH (b:Entity {uid: row.dst})
MERGE (a)-[r:%s]->(b)
ON CREATE SET r.source = $run_id
SET r += row.props, r.weight = row.weight
RETURN count(r) AS written
"""


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


class GraphStore:
    """Reads and writes mmgraph's graph in one Neo4j database through a driver it is given."""

    def __init__(self, driver: neo4j.Driver, database: str = "neo4j") -> None:
        self.driver = driver
        self.database = database

    def session(self) -> neo4j.Session:
        """A session on the store's database."""
        # Notifications such as "property key does not exist" are noise for mmgraph's queries.
        return self.driver.session(database=self.database, notifications_min_severity="OFF")

    def _read(self, query: str, **params: Any) -> list[neo4j.Record]:
        with self.session() as session:
            return session.execute_read(lambda tx: list(tx.run(query, params)))

    def _write(self, query: str, **params: Any) -> None:
        with self.session() as session:
            session.execute_write(lambda tx: tx.run(query, params).consume())

    def setup_schema(self) -> None:
        """Create the uid constraint and indexes (idempotent)."""
        with self.session() as session:
            for statement in SCHEMA_STATEMENTS:
                session.run(statement).consume()
            session.run("CALL db.awaitIndexes(300)").consume()

    # -- writes -----------------------------------------------------------------------------

    def write_batch(
        self, nodes: Sequence[NodeRow], relationships: Sequence[RelRow], run_id: str
    ) -> BatchResult:
        """Upsert nodes, then relationships, in one transaction: all of it lands or none."""
        with self.session() as session:
            return session.execute_write(_write_batch, nodes, relationships, run_id)

    # -- reads ------------------------------------------------------------------------------

    def existing_types(self, uids: Iterable[str]) -> dict[str, str]:
        """The stored type of each of ``uids`` that is in the graph."""
        records = self._read(
            "MATCH (n:Entity) WHERE n.uid IN $uids RETURN n.uid AS uid, n.type AS type",
            uids=list(uids),
        )
        return {r["uid"]: r["type"] for r in records}

    def node_states(self, uids: Iterable[str]) -> dict[str, NodeState]:
        """The :class:`NodeState` of each of ``uids`` that is in the graph."""
        records = self._read(
            "MATCH (n:Entity) WHERE n.uid IN $uids "
            "RETURN n.uid AS uid, n.type AS type, n.text AS text, n.image_ref AS image_ref, "
            "[k IN keys(n) WHERE k ENDS WITH '_enc' | [left(k, size(k) - 4), n[k]]] AS encs",
            uids=list(uids),
        )
        return {
            r["uid"]: NodeState(r["type"], dict(r["encs"]), r["text"], r["image_ref"])
            for r in records
        }

    def vector_dimension(self, node_type: str, modality: str) -> int | None:
        """The dimension of a stored ``modality`` vector of a ``node_type`` node, if any."""
        prop = vector_property(modality)
        records = self._read(
            f"MATCH (n:Entity) WHERE n.type = $type AND n.{prop} IS NOT NULL "
            f"RETURN n.{prop} AS v LIMIT 1",
            type=node_type,
        )
        return len(records[0]["v"]) // FLOAT32_LE.itemsize if records else None

    def get_nodes(self, uids: Iterable[str]) -> dict[str, StoredNode]:
        """The nodes with these uids, with vectors decoded; missing uids are absent."""
        records = self._read(
            "MATCH (n:Entity) WHERE n.uid IN $uids RETURN properties(n) AS p", uids=list(uids)
        )
        return {r["p"]["uid"]: _stored_node(r["p"]) for r in records}

    def get_node(self, uid: str) -> StoredNode | None:
        """The node with this uid, or ``None``."""
        return self.get_nodes([uid]).get(uid)

    def relationships_of(self, uid: str) -> list[tuple[str, str, float]]:
        """Outgoing relationships of a node as ``(type, dst uid, weight)``, sorted."""
        records = self._read(
            "MATCH (:Entity {uid: $uid})-[r]->(b:Entity) "
            "RETURN type(r) AS type, b.uid AS dst, r.weight AS weight",
            uid=uid,
        )
        return sorted((r["type"], r["dst"], r["weight"]) for r in records)

    def counts(self) -> GraphCounts:
        """Nodes per type label (one index scan) and relationships per type (count store); the
        results written back for analysts (clusters, predicted links) are not counted."""
        nodes = {
            r["type"]: r["n"]
            for r in self._read("MATCH (n:Entity) RETURN n.type AS type, count(*) AS n")
        }
        types = self._read("CALL db.relationshipTypes() YIELD relationshipType RETURN *")
        relationships = {}
        for record in types:
            name = record["relationshipType"]
            if name in DERIVED_RELATIONSHIPS:
                continue
            n = self._read(f"MATCH ()-[r:{_quote(name)}]->() RETURN count(r) AS n")[0]["n"]
            if n:
                relationships[name] = n
        return GraphCounts(dict(sorted(nodes.items())), dict(sorted(relationships.items())))

    # -- state kept with the graph ----------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        """A value stored with :meth:`put_state`, or ``None``."""
        records = self._read("MATCH (s:EncoderState {key: $key}) RETURN s.value AS v", key=key)
        return records[0]["v"] if records else None

    def put_state_once(self, key: str, value: str) -> str:
        """Keep ``value`` (e.g. a fitted encoder as JSON) under ``key`` unless a value is already
        kept there; return the value kept, so concurrent first writers agree on one."""
        with self.session() as session:
            return session.execute_write(
                lambda tx: tx.run(
                    "MERGE (s:EncoderState {key: $key}) "
                    "ON CREATE SET s.value = $value, s.created = $now RETURN s.value AS v",
                    key=key,
                    value=value,
                    now=datetime.now(UTC),
                ).single(strict=True)["v"]
            )

    # -- embeddings written back for analysts -----------------------------------------------

    def write_embeddings(
        self, model_id: str, uids: Sequence[str], vectors: np.ndarray, batch_size: int = 2000
    ) -> int:
        """Set ``emb`` (a float32 vector property, the form Neo4j's vector index reads) and
        ``emb_model`` on the nodes with these uids, in batches; return how many were set."""
        written = 0
        for start in range(0, len(uids), batch_size):
            rows = _Rows(
                {"uid": uid, "v": vector.tolist()}
                for uid, vector in zip(
                    uids[start : start + batch_size],
                    np.asarray(vectors[start : start + batch_size], dtype=np.float32),
                    strict=True,
                )
            )
            with self.session() as session:
                written += session.execute_write(
                    lambda tx, rows=rows: tx.run(
                        _WRITE_EMBEDDINGS, rows=rows, model=model_id
                    ).single(strict=True)["n"]
                )
        return written

    def clear_embeddings(self, keep_model: str | None = None) -> None:
        """Remove ``emb`` from every node whose embedding is not ``keep_model``'s."""
        with self.session() as session:
            session.run(_CLEAR_EMBEDDINGS, model=keep_model).consume()

    def ensure_vector_index(self, dimension: int) -> None:
        """A cosine vector index ``entity_emb`` on ``:Entity(emb)`` of ``dimension`` (recreated
        when the existing one has another dimension), online before this returns."""
        dimension = int(dimension)
        records = self._read(
            "SHOW INDEXES YIELD name, options WHERE name = $name RETURN options", name=EMB_INDEX
        )
        if records:
            config = (records[0]["options"] or {}).get("indexConfig", {})
            if config.get("vector.dimensions") == dimension:
                return
            self._write(f"DROP INDEX {EMB_INDEX}")
        self._write(
            f"CREATE VECTOR INDEX {EMB_INDEX} IF NOT EXISTS FOR (n:Entity) ON (n.emb) "
            f"OPTIONS {{indexConfig: {{`vector.dimensions`: {dimension}, "
            "`vector.similarity_function`: 'cosine'}}"
        )
        with self.session() as session:
            session.run("CALL db.awaitIndexes(300)").consume()

    def record_model(self, model_id: str, props: dict[str, Any]) -> None:
        """Keep a ``:Model {id}`` node with ``props`` and mark it the active one."""
        self._write(
            "MERGE (m:Model {id: $id}) SET m += $props, m.promoted = $now, m.active = true "
            "WITH m MATCH (o:Model) WHERE o.id <> $id SET o.active = false",
            id=model_id,
            props=props,
            now=datetime.now(UTC),
        )

    # -- the ingest audit trail -------------------------------------------------------------

    def start_run(self, run_id: str, source: str, **props: Any) -> None:
        """Record the start of an ingest run (status ``running``)."""
        self._write(
            "CREATE (r:IngestRun {id: $id, source: $source, started: $now, status: 'running'}) "
            "SET r += $props",
            id=run_id,
            source=source,
            now=datetime.now(UTC),
            props=props,
        )

    def finish_run(self, run_id: str, status: str, counts: dict[str, int], **props: Any) -> None:
        """Record how an ingest run ended: its status and counts."""
        self._write(
            "MATCH (r:IngestRun {id: $id}) "
            "SET r.status = $status, r.finished = $now, r += $counts, r += $props",
            id=run_id,
            status=status,
            now=datetime.now(UTC),
            counts=counts,
            props=props,
        )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent ingest runs, newest first, as plain dicts."""
        records = self._read(
            "MATCH (r:IngestRun) RETURN properties(r) AS r ORDER BY r.started DESC LIMIT $limit",
            limit=limit,
        )
        return [r["r"] for r in records]

    # -- reads for the service (display texts, cluster summaries) ---------------------------

    def display_texts(self, node_type: str, length: int = 80) -> dict[str, str]:
        """Each ``node_type`` node's text cut to ``length`` characters, by uid (text-less nodes
        are absent): the short display field of the service's answers, read once per model."""
        records = self._read(
            "MATCH (n:Entity) WHERE n.type = $type AND n.text IS NOT NULL "
            "RETURN n.uid AS uid, left(n.text, $length) AS text",
            type=node_type,
            length=length,
        )
        return {r["uid"]: r["text"] for r in records}

    def common_neighbours(
        self, groups: dict[str, int], top: int, length: int = 80
    ) -> dict[int, list[dict[str, Any]]]:
        """For each group of nodes (``groups`` maps a uid to its group id), the ``top`` nodes
        most linked to its members per relationship type, either direction, as dicts
        ``relation, uid, type, display, count`` (most links first); in one query."""
        records = self._read(
            "UNWIND $rows AS row "
            "MATCH (n:Entity {uid: row.uid})-[r]-(m:Entity) WHERE NOT type(r) IN $derived "
            "WITH row.group AS grp, type(r) AS relation, m, count(*) AS links "
            "ORDER BY links DESC, m.uid "
            "WITH grp, relation, collect({uid: m.uid, type: m.type, "
            "display: coalesce(left(m.text, $length), ''), count: links})[..$top] AS best "
            "RETURN grp, relation, best ORDER BY grp, relation",
            rows=_Rows({"uid": uid, "group": group} for uid, group in groups.items()),
            top=top,
            length=length,
            derived=sorted(DERIVED_RELATIONSHIPS),
        )
        out: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            for neighbour in record["best"]:
                out[record["grp"]].append({"relation": record["relation"], **neighbour})
        return dict(out)

    # -- reads for scheduled ingestion (the ledger of ingested files) -----------------------

    def ingested_sha256s(self, sha256s: Iterable[str]) -> dict[str, str]:
        """Which of these file SHA-256 digests (hex) a run with status ``ok`` or ``partial``
        ingested, each mapped to the id of the earliest such run. Runs record ``sha256s``; older
        ones only ``inputs`` entries ending in ``" sha256:<hex>"``, which are matched too."""
        records = self._read(
            "UNWIND $hashes AS h "
            "MATCH (r:IngestRun) WHERE r.status IN ['ok', 'partial'] "
            "AND (h IN coalesce(r.sha256s, []) "
            "OR any(i IN coalesce(r.inputs, []) WHERE i ENDS WITH ' sha256:' + h)) "
            "WITH h, r ORDER BY r.started "
            "RETURN h, collect(r.id)[0] AS run",
            hashes=list(sha256s),
        )
        return {r["h"]: r["run"] for r in records}

    def running_runs(self) -> list[dict[str, Any]]:
        """The ingest runs whose status is still ``running``, oldest first, as plain dicts."""
        records = self._read(
            "MATCH (r:IngestRun {status: 'running'}) RETURN properties(r) AS r ORDER BY r.started"
        )
        return [r["r"] for r in records]

    # -- analysts: read-only Cypher and written-back results --------------------------------

    def read_only_session(self) -> neo4j.Session:
        """A session whose transactions default to READ access, in which the server refuses any
        write (``Neo.ClientError.Statement.AccessMode``)."""
        return self.driver.session(
            database=self.database,
            default_access_mode=neo4j.READ_ACCESS,
            notifications_min_severity="OFF",
        )

    def query_type(self, query: str, params: dict[str, Any] | None = None) -> str | None:
        """The type of ``query``'s plan: ``'r'`` (reads only), ``'w'``, ``'rw'`` or ``'s'``
        (schema or DBMS), from ``EXPLAIN``, which plans the query without running it."""
        with self.read_only_session() as session:
            return session.execute_read(
                lambda tx: tx.run("EXPLAIN " + query, params or {}).consume().query_type
            )

    def read_query(
        self, query: str, params: dict[str, Any] | None = None, limit: int = 1000
    ) -> tuple[list[str], list[list[Any]], bool]:
        """Run ``query`` in a read transaction: its column names, its first ``limit`` rows (lists
        of driver values) and whether more rows followed. A write fails on the server."""

        def work(tx: neo4j.ManagedTransaction) -> tuple[list[str], list[list[Any]], bool]:
            result = tx.run(query, params or {})
            records = result.fetch(limit + 1)
            rows = [list(record.values()) for record in records[:limit]]
            return list(result.keys()), rows, len(records) > limit

        with self.read_only_session() as session:
            return session.execute_read(work)

    def write_clusters(
        self,
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
        clusters = _Rows(
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

        with self.session() as session:
            session.execute_write(work)
        return len(clusters)

    def write_predicted_links(
        self,
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
        rows = _Rows({"src": s, "dst": d, "score": float(p)} for s, d, p in links)
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

        with self.session() as session:
            return session.execute_write(work)


def _write_batch(
    tx: neo4j.ManagedTransaction,
    nodes: Sequence[NodeRow],
    relationships: Sequence[RelRow],
    run_id: str,
) -> BatchResult:
    nodes_created = rels_created = rels_written = 0
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for node in nodes:
        by_type[node.type].append({"uid": node.uid, "type": node.type, "props": node.properties()})
    for type_name, rows in by_type.items():
        query = _UPSERT_NODES % check_type_name(type_name)
        result = tx.run(query, rows=_Rows(rows), run_id=run_id)
        conflicts = [(r["uid"], r["stored"]) for r in result]
        if conflicts:
            uid, stored = conflicts[0]
            raise TypeConflictError(
                f"{len(conflicts)} node(s) stored with another type, e.g. {uid!r} is a "
                f"{stored}, not a {type_name}"
            )
        nodes_created += result.consume().counters.nodes_created
    rels_by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rel in relationships:
        rels_by_type[rel.type].append(
            {"src": rel.src, "dst": rel.dst, "weight": rel.weight, "props": rel.props}
        )
    for type_name, rows in rels_by_type.items():
        query = _UPSERT_RELS % check_type_name(type_name)
        result = tx.run(query, rows=_Rows(rows), run_id=run_id)
        written = result.single(strict=True)["written"]
        if written != len(rows):
            raise MissingEndpointError(
                f"{len(rows) - written} {type_name} relationship(s) name an endpoint not in "
                "the graph"
            )
        rels_written += written
        rels_created += result.consume().counters.relationships_created
    return BatchResult(len(nodes), nodes_created, rels_written, rels_created)


def _stored_node(props: dict[str, Any]) -> StoredNode:
    props = dict(props)
    uid, type_name = props.pop("uid"), props.pop("type")
    vectors = {}
    for key in [k for k in props if k.endswith("_vec")]:
        modality = key[: -len("_vec")]
        vectors[modality] = (from_bytes(props.pop(key)), props.pop(f"{modality}_enc", None))
    return StoredNode(uid, type_name, props, vectors)
