"""Read the whole graph out of Neo4j into numpy arrays, in pages, with bounded extra memory.

Node types come from the nodes' type labels and edge types from relationship types, as
``(src type, REL_TYPE, dst type)``. Each modality of a node type becomes one float32 matrix
(zeros where a node lacks it) with a presence mask; vectors of different encoders or dimensions
are never mixed in one matrix. No torch here: :mod:`mmgraph.gnn.data` turns the arrays into a
PyTorch Geometric ``HeteroData`` without copying them.

Memory: the matrices are allocated once at their final size (node counts and dimensions are read
first) and every page is written straight into them, so the peak is the final matrices plus one
page. Edges are read as internal node ids and mapped to rows with numpy (Bolt streams integers
20-40x faster than uid strings). A graph that changes between the passes raises
:class:`ExportError`; exporting again gives a consistent result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import neo4j
import numpy as np

from mmgraph.core.errors import FailedPreconditionError
from mmgraph.graph.schema import DERIVED_RELATIONSHIPS, check_modality_name, check_type_name
from mmgraph.graph.store import GraphStore
from mmgraph.graph.vectors import FLOAT32_LE

DEFAULT_PAGE_SIZE = 10_000

# Modality names are read from the database's own schema, then checked like any other name.
_MODALITIES = """
CALL db.schema.nodeTypeProperties() YIELD nodeLabels, propertyName
WITH nodeLabels, propertyName WHERE 'Entity' IN nodeLabels AND propertyName ENDS WITH '_vec'
RETURN DISTINCT left(propertyName, size(propertyName) - 4) AS modality
"""
_TYPE_COUNTS = "MATCH (n:Entity) RETURN n.type AS type, count(*) AS n"
# Keyset paging on the uid constraint's index; one record a page (lists unpack far faster than
# records), a list per node (``collect`` would drop the nulls of absent modalities). Explicit
# property names are 5x faster than filtering ``keys(n)`` per node.
_NODE_PAGE = """
MATCH (n:Entity) WHERE n.uid > $after
WITH n ORDER BY n.uid LIMIT $page
RETURN collect(n.uid) AS uids, collect(id(n)) AS ids, collect([n.type%s]) AS nodes
"""
# Edges of a page of source nodes, as columns of internal ids (nulls of edgeless nodes are
# dropped by collect). Results written back for analysts (predicted links) are not the graph.
_EDGE_PAGE = """
MATCH (n:Entity) WHERE n.uid > $after
WITH n ORDER BY n.uid LIMIT $page
WITH collect(n) AS page, collect(n.uid) AS uids
UNWIND page AS n
OPTIONAL MATCH (n)-[r]->(m:Entity) WHERE NOT type(r) IN $derived
RETURN uids,
       collect(CASE WHEN r IS NOT NULL THEN id(n) END) AS src,
       collect(type(r)) AS rel,
       collect(id(m)) AS dst,
       collect(CASE WHEN r IS NOT NULL THEN coalesce(r.weight, 1.0) END) AS weight
"""


class ExportError(FailedPreconditionError):
    """The graph cannot be turned into consistent feature matrices."""


EdgeType = tuple[str, str, str]


@dataclass
class GraphArrays:
    """The exported graph as numpy arrays.

    Attributes:
        uids: node type -> uids in row order.
        features: ``(node type, modality)`` -> ``(x, mask)``: an ``(n, dim)`` float32 matrix and
            an ``(n,)`` bool presence mask.
        encoders: node type -> modality -> the encoder tag of its vectors.
        edges: edge type -> ``(src rows, dst rows, weights)``.
    """

    uids: dict[str, list[str]] = field(default_factory=dict)
    features: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    encoders: dict[str, dict[str, str]] = field(default_factory=dict)
    edges: dict[EdgeType, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def index(self, node_type: str) -> dict[str, int]:
        """uid -> row index for one node type."""
        return {uid: i for i, uid in enumerate(self.uids[node_type])}

    @property
    def nbytes(self) -> int:
        """Bytes held by the feature matrices, masks and edge arrays."""
        arrays = [a for pair in self.features.values() for a in pair]
        arrays += [a for triple in self.edges.values() for a in triple]
        return sum(a.nbytes for a in arrays)


def read_graph(store: GraphStore, page_size: int = DEFAULT_PAGE_SIZE) -> GraphArrays:
    """Read the whole graph in pages of ``page_size`` nodes (see the module's guarantees)."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    with store.session() as session:
        modalities = sorted(check_modality_name(r["modality"]) for r in _read(session, _MODALITIES))
        counts = {check_type_name(r["type"]): r["n"] for r in _read(session, _TYPE_COUNTS)}
        nodes = _NodePass(counts, modalities)
        for page in _pages(session, _NODE_PAGE % nodes.columns, page_size):
            nodes.add(page)
        nodes.check_complete()
        edges = _read_edges(session, nodes, page_size)
    return nodes.arrays(edges)


class _NodePass:
    """Fills preallocated matrices page by page and keeps, per node in read order, its type
    code and row, so that edges (internal ids) map to rows with numpy."""

    def __init__(self, counts: dict[str, int], modalities: list[str]) -> None:
        self.modalities = modalities
        self.columns = "".join(f", n.{m}_vec, n.{m}_enc" for m in modalities)
        self.type_names = sorted(counts)
        self.type_codes = {name: code for code, name in enumerate(self.type_names)}
        self.counts = counts
        self.uids: dict[str, list[str]] = {name: [] for name in self.type_names}
        self.features: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.tags: dict[tuple[str, str], str] = {}
        total = sum(counts.values())
        self.ids = np.empty(total, dtype=np.int64)
        self.node_type = np.empty(total, dtype=np.int64)
        self.node_row = np.empty(total, dtype=np.int64)
        self.seen = 0
        self._order = self._sorted = np.empty(0, dtype=np.int64)

    def add(self, page: neo4j.Record) -> None:
        for uid, node_id, (node_type, *values) in zip(
            page["uids"], page["ids"], page["nodes"], strict=True
        ):
            rows = self.uids.get(node_type)
            if rows is None or len(rows) >= self.counts[node_type] or self.seen >= len(self.ids):
                raise ExportError("the graph changed during the export (nodes added); retry")
            row = len(rows)
            rows.append(uid)
            self.ids[self.seen] = node_id
            self.node_type[self.seen] = self.type_codes[node_type]
            self.node_row[self.seen] = row
            self.seen += 1
            for m, data, tag in zip(self.modalities, values[::2], values[1::2], strict=True):
                if data is not None:
                    self._put(node_type, m, row, data, tag)

    def _put(self, node_type: str, modality: str, row: int, data: bytes, tag: str) -> None:
        key = (node_type, modality)
        dim = len(data) // FLOAT32_LE.itemsize
        if key not in self.features:
            x = np.zeros((self.counts[node_type], dim), dtype=np.float32)
            self.features[key] = (x, np.zeros(self.counts[node_type], dtype=bool))
            self.tags[key] = tag
        x, mask = self.features[key]
        if x.shape[1] != dim or len(data) % FLOAT32_LE.itemsize:
            raise ExportError(
                f"{node_type}.{modality} vectors differ in dimension: {x.shape[1]} and {dim}"
            )
        if self.tags[key] != tag:
            found = sorted({str(self.tags[key]), str(tag)})
            raise ExportError(
                f"{node_type}.{modality} holds vectors of several encoders {found}; "
                "re-encode them with one"
            )
        x[row] = np.frombuffer(data, dtype=FLOAT32_LE)
        mask[row] = True

    def check_complete(self) -> None:
        """Refuse a pass that saw fewer nodes than counted; index the ids for :meth:`rows_of`."""
        if self.seen != len(self.ids):
            raise ExportError("the graph changed during the export (nodes removed); retry")
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]

    def rows_of(self, node_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(type codes, rows) of internal node ids; raises if one was not exported."""
        at = np.searchsorted(self._sorted, node_ids)
        at = np.minimum(at, len(self._sorted) - 1)
        if len(node_ids) and (not len(self._sorted) or (self._sorted[at] != node_ids).any()):
            raise ExportError(
                "the graph changed during the export (an edge names a node the node pass did "
                "not see); retry"
            )
        positions = self._order[at]
        return self.node_type[positions], self.node_row[positions]

    def arrays(
        self, edges: dict[EdgeType, tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> GraphArrays:
        encoders: dict[str, dict[str, str]] = {name: {} for name in self.type_names}
        for (node_type, modality), tag in sorted(self.tags.items()):
            encoders[node_type][modality] = tag or ""
        return GraphArrays(self.uids, dict(sorted(self.features.items())), encoders, edges)


def _read_edges(
    session: neo4j.Session, nodes: _NodePass, page_size: int
) -> dict[EdgeType, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Edges grouped by (src type, relationship type, dst type): src rows, dst rows, weights."""
    rel_codes: dict[str, int] = {}
    src, dst, rel, weight = [], [], [], []
    for page in _pages(session, _EDGE_PAGE, page_size):
        src.append(np.asarray(page["src"], dtype=np.int64))
        dst.append(np.asarray(page["dst"], dtype=np.int64))
        codes = (rel_codes.setdefault(t, len(rel_codes)) for t in page["rel"])
        rel.append(np.fromiter(codes, dtype=np.int64, count=len(page["rel"])))
        weight.append(np.asarray(page["weight"], dtype=np.float32))
    if not src or not sum(len(s) for s in src):
        return {}
    src_type, src_row = nodes.rows_of(np.concatenate(src))
    dst_type, dst_row = nodes.rows_of(np.concatenate(dst))
    rel_all = np.concatenate(rel)
    n_types, n_rels = max(len(nodes.type_names), 1), max(len(rel_codes), 1)
    key = (src_type * n_rels + rel_all) * n_types + dst_type
    groups, inverse = np.unique(key, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(groups) + 1))
    rel_names = {code: check_type_name(name) for name, code in rel_codes.items()}
    weight_all = np.concatenate(weight)
    edges = {}
    for g, k in enumerate(groups.tolist()):
        members = order[bounds[g] : bounds[g + 1]]
        s_type, rest = divmod(k, n_rels * n_types)
        rel_code, d_type = divmod(rest, n_types)
        edge_type = (nodes.type_names[s_type], rel_names[rel_code], nodes.type_names[d_type])
        edges[edge_type] = (src_row[members], dst_row[members], weight_all[members])
    return dict(sorted(edges.items()))


def _read(session: neo4j.Session, query: str) -> list[neo4j.Record]:
    return session.execute_read(lambda tx: list(tx.run(query)))


def _pages(session: neo4j.Session, query: str, page_size: int) -> Iterator[neo4j.Record]:
    """Run a keyset-paged query (one record per page, ``uids`` in order) to the end."""
    after = ""
    derived = sorted(DERIVED_RELATIONSHIPS)
    while True:
        page = session.execute_read(
            lambda tx, after=after: tx.run(
                query, after=after, page=page_size, derived=derived
            ).single()
        )
        if page is None or not page["uids"]:
            return
        yield page
        if len(page["uids"]) < page_size:
            return
        after = page["uids"][-1]
