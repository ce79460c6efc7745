"""The Neo4j graph store: the driver session, schema setup, batched upserts, node reads, counts.

The graph layer's other rooms take a :class:`GraphStore` and hold their own Cypher: the ingest
audit trail (:mod:`.audit`), encoder state (:mod:`.encoder_state`), what is written back for
analysts (:mod:`.writeback`), the service's lookups (:mod:`.lookups`), analysts' read-only Cypher
(:mod:`.cypher`), export (:mod:`.export`) and GDS (:mod:`.gds`). Values always travel as
parameters; the only names put into query text are labels and relationship types that passed
:mod:`mmgraph.graph.schema`. Every write is one managed transaction (``execute_write``), which
the driver retries on transient errors and which leaves nothing behind when it fails. The
driver's own failures leave a session as mmgraph's error kinds (:func:`driver_errors`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import neo4j

from mmgraph.core.errors import (
    FailedPreconditionError,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
)
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
    """An upsert named nodes with a type other than the one they are stored with; ``conflicts``
    maps each such uid to its stored type."""

    def __init__(self, message: str, conflicts: dict[str, str]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class MissingEndpointError(StoreError):
    """A relationship named an endpoint uid that is not in the graph."""


class WriteRefusedError(StoreError):
    """Neo4j refused a write batch (a value it cannot store, say)."""


class UnknownNodeError(NotFoundError):
    """A uid that is not a node of the graph (or of the model asked)."""


class DatabaseUnavailableError(UnavailableError):
    """The driver lost the database, or never reached it."""


class DatabaseAuthError(UnauthenticatedError):
    """Neo4j refused the configured credentials."""


@contextmanager
def driver_errors() -> Iterator[None]:
    """The driver's failures raised inside as mmgraph's kinds: an unreachable or lost database
    is :class:`DatabaseUnavailableError`, refused credentials :class:`DatabaseAuthError`."""
    try:
        yield
    except (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired) as e:
        raise DatabaseUnavailableError(
            f"the graph database is unavailable, retry later: {e}"
        ) from e
    except neo4j.exceptions.AuthError as e:
        raise DatabaseAuthError(f"Neo4j refused the credentials: {e.message or e}") from e


@contextmanager
def _refused_writes() -> Iterator[None]:
    """A write Neo4j still refuses after the driver's retries, raised as mmgraph's kinds: a
    transient failure as :class:`DatabaseUnavailableError`, any other as
    :class:`WriteRefusedError` (nothing of the transaction was written)."""
    try:
        yield
    except neo4j.exceptions.TransientError as e:
        raise DatabaseUnavailableError(f"Neo4j could not take the write: {e}") from e
    except neo4j.exceptions.Neo4jError as e:
        raise WriteRefusedError(f"Neo4j refused the write: {e.message or e}") from e


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


class Rows(list):
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


class GraphStore:
    """Reads and writes mmgraph's graph in one Neo4j database through a driver it is given."""

    def __init__(self, driver: neo4j.Driver, database: str = "neo4j") -> None:
        self.driver = driver
        self.database = database

    @contextmanager
    def session(self, read_only: bool = False) -> Iterator[neo4j.Session]:
        """A session on the store's database, the driver's failures inside it raised as
        mmgraph's kinds (:func:`driver_errors`). ``read_only`` sessions default to READ access,
        in which the server itself refuses any write (``Neo.ClientError.Statement.AccessMode``).
        """
        access = neo4j.READ_ACCESS if read_only else neo4j.WRITE_ACCESS
        # Notifications such as "property key does not exist" are noise for mmgraph's queries.
        with (
            driver_errors(),
            self.driver.session(
                database=self.database,
                default_access_mode=access,
                notifications_min_severity="OFF",
            ) as session,
        ):
            yield session

    def read(self, query: str, **params: Any) -> list[neo4j.Record]:
        """Every record of ``query`` run in one read transaction."""
        with self.session() as session:
            return session.execute_read(lambda tx: list(tx.run(query, params)))

    def write(self, query: str, **params: Any) -> None:
        """Run ``query`` in one write transaction."""
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
        """Upsert nodes, then relationships, in one transaction: all of it lands or none. A batch
        Neo4j refuses raises :class:`WriteRefusedError` (nothing of it was written)."""
        with self.session() as session, _refused_writes():
            return session.execute_write(_write_batch, nodes, relationships, run_id)

    def set_vectors(
        self, modality: str, node_type: str, tag: str, rows: Sequence[tuple[str, Any]]
    ) -> int:
        """Set ``modality``'s vector (and encoder ``tag``) of stored nodes of ``node_type`` by
        uid, in one transaction; a uid not in the graph, or stored under another type, is
        skipped. Returns the number of nodes set."""
        vec, enc = vector_property(modality), encoder_property(modality)
        query = (
            "UNWIND $rows AS row MATCH (n:Entity {uid: row.uid}) WHERE n.type = $type "
            f"SET n.{vec} = row.vec, n.{enc} = $tag RETURN count(n) AS n"
        )
        packed = Rows({"uid": uid, "vec": to_bytes(vector)} for uid, vector in rows)

        def write(tx: neo4j.ManagedTransaction) -> int:
            return tx.run(query, rows=packed, type=node_type, tag=tag).single(strict=True)["n"]

        with self.session() as session, _refused_writes():
            return session.execute_write(write)

    # -- reads ------------------------------------------------------------------------------

    def existing_types(self, uids: Iterable[str]) -> dict[str, str]:
        """The stored type of each of ``uids`` that is in the graph."""
        records = self.read(
            "MATCH (n:Entity) WHERE n.uid IN $uids RETURN n.uid AS uid, n.type AS type",
            uids=list(uids),
        )
        return {r["uid"]: r["type"] for r in records}

    def node_states(self, uids: Iterable[str]) -> dict[str, NodeState]:
        """The :class:`NodeState` of each of ``uids`` that is in the graph."""
        records = self.read(
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
        records = self.read(
            f"MATCH (n:Entity) WHERE n.type = $type AND n.{prop} IS NOT NULL "
            f"RETURN n.{prop} AS v LIMIT 1",
            type=node_type,
        )
        return len(records[0]["v"]) // FLOAT32_LE.itemsize if records else None

    def get_nodes(self, uids: Iterable[str]) -> dict[str, StoredNode]:
        """The nodes with these uids, with vectors decoded; missing uids are absent."""
        records = self.read(
            "MATCH (n:Entity) WHERE n.uid IN $uids RETURN properties(n) AS p", uids=list(uids)
        )
        return {r["p"]["uid"]: _stored_node(r["p"]) for r in records}

    def get_node(self, uid: str) -> StoredNode | None:
        """The node with this uid, or ``None``."""
        return self.get_nodes([uid]).get(uid)

    def relationships_of(self, uid: str) -> list[tuple[str, str, float]]:
        """Outgoing relationships of a node as ``(type, dst uid, weight)``, sorted."""
        records = self.read(
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
            for r in self.read("MATCH (n:Entity) RETURN n.type AS type, count(*) AS n")
        }
        types = self.read("CALL db.relationshipTypes() YIELD relationshipType RETURN *")
        relationships = {}
        for record in types:
            name = record["relationshipType"]
            if name in DERIVED_RELATIONSHIPS:
                continue
            n = self.read(f"MATCH ()-[r:{_quote(name)}]->() RETURN count(r) AS n")[0]["n"]
            if n:
                relationships[name] = n
        return GraphCounts(dict(sorted(nodes.items())), dict(sorted(relationships.items())))


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
    conflicts: dict[str, str] = {}
    for type_name, rows in by_type.items():
        query = _UPSERT_NODES % check_type_name(type_name)
        result = tx.run(query, rows=Rows(rows), run_id=run_id)
        conflicts.update((r["uid"], r["stored"]) for r in result)
        nodes_created += result.consume().counters.nodes_created
    if conflicts:
        uid, stored = next(iter(conflicts.items()))
        raise TypeConflictError(
            f"{len(conflicts)} node(s) stored with another type, e.g. {uid!r} is a {stored}",
            conflicts,
        )
    rels_by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rel in relationships:
        rels_by_type[rel.type].append(
            {"src": rel.src, "dst": rel.dst, "weight": rel.weight, "props": rel.props}
        )
    for type_name, rows in rels_by_type.items():
        query = _UPSERT_RELS % check_type_name(type_name)
        result = tx.run(query, rows=Rows(rows), run_id=run_id)
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
