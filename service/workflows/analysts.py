"""What analysts get in Cypher: read-only queries on the graph, and the promoted model's clusters
and predicted links written back to Neo4j (``:Cluster``/``IN_CLUSTER``, ``:PREDICTED``), computed
exactly as the service answers them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn.runs import load_run
from mmgraph.graph import writeback
from mmgraph.graph.connection import open_store
from mmgraph.graph.cypher import QueryRows, run_read_only
from mmgraph.service.serving.clustering import cluster
from mmgraph.service.serving.links import predict_links
from mmgraph.service.serving.options import ClusterOptions
from mmgraph.service.serving.registry import ActiveModel


class NothingToPredictError(InvalidArgumentError):
    """No source node to predict links from: the model scores no such relation from them."""


@dataclass(frozen=True)
class WrittenClusters:
    """Clusters written back: the run, the method, how many clusters and member nodes."""

    run_id: str
    method: str
    clusters: int
    members: int

    def to_json(self) -> dict[str, Any]:
        """The shape ``mmgraph analysts write-clusters --json`` prints."""
        return asdict(self)


@dataclass(frozen=True)
class WrittenPredictions:
    """Predicted links written back: the run, the relation, the sources and the links."""

    run_id: str
    relation: str
    sources: int
    links: int

    def to_json(self) -> dict[str, Any]:
        """The shape ``mmgraph analysts write-predictions --json`` prints."""
        return asdict(self)


def read_only_query(
    settings: Settings, query: str, params: dict[str, Any], limit: int
) -> QueryRows:
    """Run an analyst's query on the configured Neo4j if its plan only reads (see
    :mod:`mmgraph.graph.cypher`); its first ``limit`` rows."""
    with open_store(settings) as store:
        return run_read_only(store, query, params, limit)


def write_clusters(
    settings: Settings,
    *,
    types: Sequence[str],
    options: ClusterOptions,
    run: str | None = None,
) -> WrittenClusters:
    """Cluster the nodes of ``types`` with run ``run`` (default: the promoted one) as the
    service does, and write the result back as ``(:Cluster {id: "<run>/<method>/<k>", run,
    method, cluster, size, central, space})`` nodes with ``(:Entity)-[:IN_CLUSTER]->(:Cluster)``,
    replacing that run and method's clusters."""
    with open_store(settings) as store:
        model = ActiveModel.load(load_run(settings.home, run), store)
        result = cluster(model, store, types=types, options=options)
        assignments = dict(zip(result.uids, result.labels.tolist(), strict=True))
        space = model.space(options.space)
        summaries = {
            s.cluster: {"central": [h.uid for h in s.central], "space": space}
            for s in result.clusters
        }
        written = writeback.write_clusters(
            store, model.run_id, options.method, assignments, summaries
        )
    members = sum(label >= 0 for label in assignments.values())
    return WrittenClusters(model.run_id, options.method, written, members)


def write_predictions(
    settings: Settings,
    *,
    relation: str,
    k: int,
    types: Sequence[str] = (),
    uids: Sequence[str] = (),
    dst_type: str = "",
    run: str | None = None,
    track: Callable[[Iterable[str]], Iterable[str]] = lambda sources: sources,
) -> WrittenPredictions:
    """Predict the ``k`` most likely new ``relation`` links from each source node (``uids``,
    the nodes of ``types``, or by default every node the model scores ``relation`` from) as the
    service does, and write them back as ``[:PREDICTED {relation, score, model}]``, replacing
    that model's ``relation`` predictions from those sources. ``track`` wraps the loop over the
    sources (a progress bar)."""
    with open_store(settings) as store:
        model = ActiveModel.load(load_run(settings.home, run), store)
        sources = _sources(model, relation, types, uids)
        links = []
        for uid in track(sources):
            found = predict_links(model, store, uid, relation, k, dst_type)
            links += [(link.src, link.dst, link.probability) for link in found]
        written = writeback.write_predicted_links(store, model.run_id, relation, links, sources)
    return WrittenPredictions(model.run_id, relation, len(sources), written)


def _sources(
    model: ActiveModel, relation: str, types: Sequence[str], uids: Sequence[str]
) -> list[str]:
    """The uids to predict from: ``uids`` and the nodes of ``types``, or, when neither is given,
    every node of a type the model scores ``relation`` links from."""
    types = list(types)
    if not types and not uids:
        types = sorted({src for src, rel, _ in model.run.relations if rel == relation})
        if not types:
            scored = sorted({rel for _, rel, _ in model.run.relations})
            raise NothingToPredictError(
                f"model {model.run_id} scores no {relation!r} links; it scores {scored}"
            )
    for node_type in types:
        if node_type not in model.run.uids:
            raise NothingToPredictError(
                f"model {model.run_id} has no {node_type!r} nodes; it has {sorted(model.run.uids)}"
            )
    picked = [uid for node_type in types for uid in model.run.uids[node_type]]
    return list(dict.fromkeys(picked + list(uids)))
