"""Write and export throughput of the graph store on a synthetic graph (a benchmark, not a test).

Writes N nodes with a D-dimensional float32 vector each and M relationships through
``GraphStore.write_batch`` (batched ``UNWIND``, one transaction a batch), then exports the graph
to ``HeteroData`` twice (the faster counts; the first is reported too); beside it, a per-row
``MERGE`` baseline on a few thousand nodes. Uses the Neo4j named by ``NEO4J_URI``, else starts
the local one under a temporary ``MMGRAPH_HOME``. Prints a table and writes
``bench/results/ingest.json``.

    python bench/ingest.py [--nodes 100000] [--rels 500000] [--dim 384] [--batch 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import neo4j
import numpy as np

from mmgraph.core.config import Settings
from mmgraph.gnn.data import export_heterodata
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore, NodeRow, RelRow

RESULTS = Path(__file__).parent / "results" / "ingest.json"


def _nodes(start: int, stop: int, dim: int, rng: np.random.Generator) -> list[NodeRow]:
    vectors = rng.standard_normal((stop - start, dim), dtype=np.float32)
    return [
        NodeRow(f"n:{i}", "Item", {"rank": i}, {"feat": (vectors[i - start], "synthetic@1")})
        for i in range(start, stop)
    ]


def _write_nodes(store: GraphStore, n: int, dim: int, batch: int) -> float:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        store.write_batch(_nodes(start, min(start + batch, n), dim, rng), [], "bench")
    return time.perf_counter() - t0


def _write_rels(store: GraphStore, n: int, m: int, batch: int) -> float:
    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    t0 = time.perf_counter()
    for start in range(0, m, batch):
        rows = [
            RelRow(f"n:{s}", f"n:{d}", "LINKS", 1.0)
            for s, d in zip(src[start : start + batch], dst[start : start + batch], strict=True)
        ]
        store.write_batch([], rows, "bench")
    return time.perf_counter() - t0


def _per_row_baseline(store: GraphStore, n: int, dim: int) -> float:
    """One ``MERGE`` statement per node, a transaction per 1,000 statements."""
    rng = np.random.default_rng(2)
    rows = [
        row for start in range(0, n, 1000) for row in _nodes(start, min(start + 1000, n), dim, rng)
    ]
    t0 = time.perf_counter()
    with store.session() as session:
        for start in range(0, n, 1000):

            def work(tx: neo4j.ManagedTransaction, chunk: list[NodeRow]) -> None:
                for row in chunk:
                    tx.run(
                        "MERGE (n:Entity {uid: $uid}) ON CREATE SET n:Baseline "
                        "SET n.type = 'Baseline', n += $props",
                        uid=f"b:{row.uid}",
                        props=row.properties(),
                    ).consume()

            session.execute_write(work, rows[start : start + 1000])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rels", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--baseline", type=int, default=5000)
    args = parser.parse_args()

    settings = Settings.from_env()
    with ExitStack() as stack:
        if settings.neo4j_uri:
            uri, auth = settings.neo4j_uri, (settings.neo4j_user, settings.neo4j_password)
        else:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(
                LocalNeo4j.from_settings(settings.model_copy(update={"home": home}))
            )
            uri, auth = server.uri, (server.user, server.password)
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        store = GraphStore(driver, settings.neo4j_database)
        store.setup_schema()

        nodes_s = _write_nodes(store, args.nodes, args.dim, args.batch)
        rels_s = _write_rels(store, args.nodes, args.rels, args.batch)
        # Twice: right after the writes, and again (the second run's caches are warm).
        export_runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            exported = export_heterodata(store)
            export_runs.append(time.perf_counter() - t0)
        export_s = min(export_runs)
        assert exported.data["Item"].num_nodes == args.nodes
        exported_edges = exported.data["Item", "LINKS", "Item"].edge_index.shape[1]
        baseline_s = _per_row_baseline(store, args.baseline, args.dim)

    figures = {
        "nodes": args.nodes,
        "relationships": args.rels,
        "relationships_after_merge": exported_edges,
        "dim": args.dim,
        "batch": args.batch,
        "nodes_per_s": args.nodes / nodes_s,
        "relationships_per_s": args.rels / rels_s,
        "export_nodes_per_s": args.nodes / export_s,
        "export_relationships_per_s": exported_edges / export_s,
        "export_seconds": export_runs,
        "export_nodes_per_s_first": args.nodes / export_runs[0],
        "per_row_merge_nodes_per_s": args.baseline / baseline_s,
        "neo4j_heap": settings.neo4j_heap,
        "neo4j_pagecache": settings.neo4j_pagecache,
        "machine": f"{platform.node()} {platform.machine()}",
    }
    print(f"{'measure':<34}{'value':>14}")
    for key in (
        "nodes_per_s",
        "relationships_per_s",
        "export_nodes_per_s",
        "export_nodes_per_s_first",
        "export_relationships_per_s",
        "per_row_merge_nodes_per_s",
    ):
        print(f"{key:<34}{figures[key]:>14,.0f}")
    print(
        f"{'(nodes, rels, dim, batch)':<34}{str((args.nodes, args.rels, args.dim, args.batch)):>14}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
