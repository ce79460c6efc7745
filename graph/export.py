"""Export the graph from Neo4j to a PyTorch Geometric ``HeteroData``, streamed in pages.

Node types come from the nodes' type labels and edge types from relationship types, as
``(src type, REL_TYPE, dst type)``. Each modality of a node type becomes a feature matrix
``data[type]["<modality>_x"]`` (zeros where a node lacks it) with a presence mask
``data[type]["<modality>_mask"]``; vectors of different encoders are never mixed in one matrix.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import neo4j
import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmgraph.graph.schema import check_modality_name
from mmgraph.graph.store import GraphStore
from mmgraph.graph.vectors import FLOAT32_LE

DEFAULT_PAGE_SIZE = 10_000

# Modality names are read from the database's own schema, then checked like any other name.
_MODALITIES = """
CALL db.schema.nodeTypeProperties() YIELD nodeLabels, propertyName
WITH nodeLabels, propertyName WHERE 'Entity' IN nodeLabels AND propertyName ENDS WITH '_vec'
RETURN DISTINCT left(propertyName, size(propertyName) - 4) AS modality
"""
# Keyset paging on the uid constraint's index; one record a page (lists unpack far faster than
# records), a list per node (``collect`` would drop the nulls of absent modalities). Explicit
# property names are 5x faster than filtering ``keys(n)`` per node.
_NODE_PAGE = """
MATCH (n:Entity) WHERE n.uid > $after
WITH n ORDER BY n.uid LIMIT $page
RETURN collect(n.uid) AS uids, collect([n.type%s]) AS nodes
"""
# Edges of a page of source nodes, as columns (nulls of edgeless nodes are dropped by collect);
# columns unpack 2.5x faster than a list of edges per node.
_EDGE_PAGE = """
MATCH (n:Entity) WHERE n.uid > $after
WITH n ORDER BY n.uid LIMIT $page
WITH collect(n) AS page, collect(n.uid) AS uids
UNWIND page AS n
OPTIONAL MATCH (n)-[r]->(m:Entity)
RETURN uids,
       collect(CASE WHEN r IS NOT NULL THEN n.uid END) AS src,
       collect(type(r)) AS rel,
       collect(m.uid) AS dst,
       collect(CASE WHEN r IS NOT NULL THEN coalesce(r.weight, 1.0) END) AS weight
"""


class ExportError(RuntimeError):
    """The graph cannot be turned into consistent feature matrices."""


@dataclass
class GraphExport:
    """The exported graph and the maps between uids and row indices per node type."""

    data: HeteroData
    uids: dict[str, list[str]]
    encoders: dict[str, dict[str, str]] = field(default_factory=dict)

    def index(self, node_type: str) -> dict[str, int]:
        """uid -> row index for one node type."""
        return {uid: i for i, uid in enumerate(self.uids[node_type])}


def export_heterodata(store: GraphStore, page_size: int = DEFAULT_PAGE_SIZE) -> GraphExport:
    """Read the whole graph in pages of ``page_size`` nodes and build a ``HeteroData``."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    with store.session() as session:
        modalities = sorted(
            check_modality_name(r["modality"])
            for r in session.execute_read(lambda tx: list(tx.run(_MODALITIES)))
        )
        nodes = _read_nodes(session, modalities, page_size)
        edges = _read_edges(session, nodes, page_size)
    return _assemble(nodes, edges)


@dataclass
class _Nodes:
    """The node pass: per type its uids in row order, vectors and encoder tags; and for every
    node, in read order, its type code and row, so that edges map to rows with numpy."""

    uids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    vectors: dict[tuple[str, str], list[tuple[int, bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    tags: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    position: dict[str, int] = field(default_factory=dict)
    type_codes: dict[str, int] = field(default_factory=dict)
    node_type: list[int] = field(default_factory=list)
    node_row: list[int] = field(default_factory=list)


def _read_nodes(session: neo4j.Session, modalities: list[str], page_size: int) -> _Nodes:
    nodes = _Nodes()
    columns = "".join(f", n.{m}_vec, n.{m}_enc" for m in modalities)
    for page in _pages(session, _NODE_PAGE % columns, page_size):
        for uid, (node_type, *values) in zip(page["uids"], page["nodes"], strict=True):
            rows = nodes.uids[node_type]
            row = len(rows)
            rows.append(uid)
            nodes.position[uid] = len(nodes.node_row)
            nodes.node_type.append(nodes.type_codes.setdefault(node_type, len(nodes.type_codes)))
            nodes.node_row.append(row)
            for m, data, tag in zip(modalities, values[::2], values[1::2], strict=True):
                if data is not None:
                    nodes.vectors[node_type, m].append((row, data))
                    nodes.tags[node_type, m].add(tag)
    return nodes


def _read_edges(
    session: neo4j.Session, nodes: _Nodes, page_size: int
) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Edges grouped by (src type, relationship type, dst type): src rows, dst rows, weights."""
    rel_codes: dict[str, int] = {}
    src, dst, rel, weight = [], [], [], []
    for page in _pages(session, _EDGE_PAGE, page_size):
        src.append(np.fromiter(map(nodes.position.__getitem__, page["src"]), dtype=np.int64))
        dst.append(np.fromiter(map(nodes.position.__getitem__, page["dst"]), dtype=np.int64))
        codes = (rel_codes.setdefault(t, len(rel_codes)) for t in page["rel"])
        rel.append(np.fromiter(codes, dtype=np.int64))
        weight.append(np.asarray(page["weight"], dtype=np.float32))
    if not src:
        return {}
    src_all, dst_all, rel_all = np.concatenate(src), np.concatenate(dst), np.concatenate(rel)
    node_type, node_row = np.asarray(nodes.node_type), np.asarray(nodes.node_row)
    n_types, n_rels = max(len(nodes.type_codes), 1), max(len(rel_codes), 1)
    key = (node_type[src_all] * n_rels + rel_all) * n_types + node_type[dst_all]
    groups, inverse = np.unique(key, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(groups) + 1))
    type_names = {code: name for name, code in nodes.type_codes.items()}
    rel_names = {code: name for name, code in rel_codes.items()}
    weight_all = np.concatenate(weight)
    edges = {}
    for g, k in enumerate(groups.tolist()):
        members = order[bounds[g] : bounds[g + 1]]
        src_type, rest = divmod(k, n_rels * n_types)
        rel_code, dst_type = divmod(rest, n_types)
        edges[type_names[src_type], rel_names[rel_code], type_names[dst_type]] = (
            node_row[src_all[members]],
            node_row[dst_all[members]],
            weight_all[members],
        )
    return edges


def _pages(session: neo4j.Session, query: str, page_size: int) -> Iterator[neo4j.Record]:
    """Run a keyset-paged query (one record per page, ``uids`` in order) to the end."""
    after = ""
    while True:
        page = session.execute_read(
            lambda tx, after=after: tx.run(query, after=after, page=page_size).single()
        )
        if page is None or not page["uids"]:
            return
        yield page
        if len(page["uids"]) < page_size:
            return
        after = page["uids"][-1]


def _assemble(
    nodes: _Nodes, edges: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> GraphExport:
    data = HeteroData()
    uids = dict(sorted(nodes.uids.items()))
    encoders: dict[str, dict[str, str]] = {node_type: {} for node_type in uids}
    for node_type, rows in uids.items():
        data[node_type].num_nodes = len(rows)
    for (node_type, modality), rows in sorted(nodes.vectors.items()):
        found = nodes.tags[node_type, modality]
        if len(found) > 1:
            raise ExportError(
                f"{node_type}.{modality} holds vectors of several encoders "
                f"{sorted(map(str, found))}; re-encode them with one"
            )
        x, mask = _matrix(node_type, modality, len(uids[node_type]), rows)
        data[node_type][f"{modality}_x"] = torch.from_numpy(x)
        data[node_type][f"{modality}_mask"] = torch.from_numpy(mask)
        encoders[node_type][modality] = next(iter(found)) or ""
    for edge_type, (src_rows, dst_rows, weights) in sorted(edges.items()):
        store = data[edge_type]
        store.edge_index = torch.from_numpy(np.stack([src_rows, dst_rows]))
        store.edge_weight = torch.from_numpy(weights)
    return GraphExport(data, uids, encoders)


def _matrix(
    node_type: str, modality: str, n: int, rows: list[tuple[int, bytes]]
) -> tuple[np.ndarray, np.ndarray]:
    sizes = {len(data) for _, data in rows}
    if len(sizes) > 1:
        dims = sorted(size // FLOAT32_LE.itemsize for size in sizes)
        raise ExportError(f"{node_type}.{modality} vectors differ in dimension: {dims}")
    dim = sizes.pop() // FLOAT32_LE.itemsize
    index = np.fromiter((row for row, _ in rows), dtype=np.int64, count=len(rows))
    values = np.frombuffer(b"".join(data for _, data in rows), dtype=FLOAT32_LE)
    x = np.zeros((n, dim), dtype=np.float32)
    x[index] = values.reshape(len(rows), dim)
    mask = np.zeros(n, dtype=bool)
    mask[index] = True
    return x, mask
