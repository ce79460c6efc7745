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
_EDGE_PAGE = """
MATCH (n:Entity) WHERE n.uid > $after
WITH n ORDER BY n.uid LIMIT $page
RETURN collect(n.uid) AS uids,
       collect([(n)-[r]->(m:Entity) | [type(r), m.uid, r.weight]]) AS out
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
        columns = "".join(f", n.{m}_vec, n.{m}_enc" for m in modalities)
        uids: dict[str, list[str]] = defaultdict(list)
        where: dict[str, tuple[str, int]] = {}
        vectors: dict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
        tags: dict[tuple[str, str], set[str]] = defaultdict(set)
        for page in _pages(session, _NODE_PAGE % columns, page_size):
            for uid, (node_type, *values) in zip(page["uids"], page["nodes"], strict=True):
                rows = uids[node_type]
                row = len(rows)
                where[uid] = (node_type, row)
                rows.append(uid)
                for m, data, tag in zip(modalities, values[::2], values[1::2], strict=True):
                    if data is not None:
                        vectors[node_type, m].append((row, data))
                        tags[node_type, m].add(tag)
        edges: dict[tuple[str, str, str], tuple[list[int], list[int], list[float]]] = defaultdict(
            lambda: ([], [], [])
        )
        for page in _pages(session, _EDGE_PAGE, page_size):
            for uid, out in zip(page["uids"], page["out"], strict=True):
                src_type, src_row = where[uid]
                for rel_type, dst, weight in out:
                    dst_type, dst_row = where[dst]
                    src_rows, dst_rows, weights = edges[src_type, rel_type, dst_type]
                    src_rows.append(src_row)
                    dst_rows.append(dst_row)
                    weights.append(1.0 if weight is None else weight)
    return _assemble(dict(uids), vectors, tags, edges)


def _pages(session: neo4j.Session, query: str, page_size: int) -> Iterator[neo4j.Record]:
    """Run a keyset-paged query (one record per page, ``uids`` in order) to the end."""
    after = ""
    while True:
        page = session.execute_read(
            lambda tx, after=after: tx.run(query, after=after, page=page_size).single(strict=True)
        )
        if page["uids"]:
            yield page
        if len(page["uids"]) < page_size:
            return
        after = page["uids"][-1]


def _assemble(
    uids: dict[str, list[str]],
    vectors: dict[tuple[str, str], list[tuple[int, bytes]]],
    tags: dict[tuple[str, str], set[str]],
    edges: dict[tuple[str, str, str], tuple[list[int], list[int], list[float]]],
) -> GraphExport:
    data = HeteroData()
    encoders: dict[str, dict[str, str]] = {node_type: {} for node_type in uids}
    for node_type, rows in sorted(uids.items()):
        data[node_type].num_nodes = len(rows)
    for (node_type, modality), rows in sorted(vectors.items()):
        found = tags[node_type, modality]
        if len(found) > 1:
            raise ExportError(
                f"{node_type}.{modality} holds vectors of several encoders "
                f"{sorted(map(str, found))}; re-encode them with one"
            )
        x, mask = _matrix(node_type, modality, len(uids[node_type]), rows)
        data[node_type][f"{modality}_x"] = torch.from_numpy(x)
        data[node_type][f"{modality}_mask"] = torch.from_numpy(mask)
        encoders[node_type][modality] = next(iter(found)) or ""
    for (src_type, rel_type, dst_type), (src_rows, dst_rows, weights) in sorted(edges.items()):
        store = data[src_type, rel_type, dst_type]
        store.edge_index = torch.tensor([src_rows, dst_rows], dtype=torch.long)
        store.edge_weight = torch.tensor(weights, dtype=torch.float32)
    return GraphExport(data, dict(sorted(uids.items())), encoders)


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
