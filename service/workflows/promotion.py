"""Promoting a trained run: the one that answers queries, with its embeddings in Neo4j."""

from __future__ import annotations

import json

from mmgraph.core.config import Settings
from mmgraph.gnn.runs import load_run, set_active_run
from mmgraph.graph import writeback
from mmgraph.graph.connection import open_store
from mmgraph.graph.store import GraphStore


def promote_run(settings: Settings, store: GraphStore, run_id: str) -> int:
    """Make ``run_id`` the run that answers queries, and write its fused embeddings back to
    Neo4j as ``emb`` (others' removed) with the vector index and an active ``:Model`` node, so
    analysts can query them in Cypher; return how many embeddings were written."""
    run = load_run(settings.home, run_id)
    store.setup_schema()
    written, dim = 0, 0
    for node_type, vectors in run.embeddings("fused").items():
        dim = vectors.shape[1]
        written += writeback.write_embeddings(store, run.run_id, run.uids[node_type], vectors)
    writeback.clear_embeddings(store, keep_model=run.run_id)
    writeback.ensure_vector_index(store, dim)
    metrics = {k: v for k, v in run.metrics.items() if isinstance(v, int | float)}
    writeback.record_model(
        store,
        run.run_id,
        {"model": run.model, "created": run.created, "metrics": json.dumps(metrics)},
    )
    set_active_run(settings.home, run.run_id)
    return written


def promote(settings: Settings, run_id: str) -> int:
    """:func:`promote_run` on the configured Neo4j (``mmgraph models promote``)."""
    with open_store(settings) as store:
        return promote_run(settings, store, run_id)
