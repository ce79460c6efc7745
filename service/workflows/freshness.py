"""Keep the served embeddings fresh as the graph grows: embed new nodes with the promoted model,
and retrain only when the policy says the model is stale.

:func:`refresh_embeddings` embeds the nodes ingested since the promoted run was trained (or last
refreshed) with that run's model (:func:`mmgraph.gnn.inductive.infer_new_nodes`), writes their
fused embeddings to Neo4j as ``emb`` with the run's id in ``emb_model`` (first, so that a failure
leaves them to the next refresh), then appends them to the run's overlay. A server in this
process (``registry``) serves them at once; a server in another process finds the overlay's new
version on its next call (at most ``Registry.fresh_poll_seconds`` later) and adds them to its
indexes: neither restarts nor rebuilds.

:func:`retrain_if_stale` measures staleness against what the promoted run was trained on; above
the threshold it trains the same model with the same settings on the current graph, evaluates the
new run and the promoted one on the validation edges of the same new split (the promoted model
embeds that graph inductively), and promotes the new run only if its validation MRR is not worse
(by ``min_gain``). A run not promoted stays listed (``mmgraph models list``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from mmgraph.core.config import Settings
from mmgraph.gnn.experiment import run_experiment
from mmgraph.gnn.inductive import (
    DEFAULT_THRESHOLD,
    GraphMismatchError,
    check_threshold,
    infer_new_nodes,
    split_config,
    staleness,
    train_config,
    validation_metrics,
)
from mmgraph.gnn.runs import append_nodes, load_run
from mmgraph.gnn.spaces import FUSED
from mmgraph.gnn.split import split_graph
from mmgraph.graph import writeback
from mmgraph.graph.connection import open_store
from mmgraph.graph.store import GraphStore
from mmgraph.service.serving.registry import Registry
from mmgraph.service.workflows.promotion import promote_run
from mmgraph.service.workflows.training import export_graph

log = logging.getLogger(__name__)


@dataclass
class RefreshReport:
    """What :func:`refresh_embeddings` did; :meth:`to_json` is ``mmgraph refresh --json``."""

    run_id: str
    new_nodes: dict[str, int] = field(default_factory=dict)
    written: int = 0
    appended: int = 0
    served: int | None = None
    unknown_types: dict[str, int] = field(default_factory=dict)
    staleness: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def refresh_embeddings(
    settings: Settings, store: GraphStore, registry: Registry | None = None
) -> RefreshReport:
    """Embed the nodes the promoted run has no embedding for, write them to Neo4j, append them
    to the run, and (with ``registry``, a server in this process) serve them (see the module)."""
    clock = _Clock()
    run = load_run(settings.home)
    export = export_graph(settings, store)
    clock.lap("export")
    new = infer_new_nodes(run, export)
    clock.lap("infer")
    report = RefreshReport(
        run.run_id,
        new_nodes={t: len(u) for t, u in new.uids.items()},
        unknown_types=new.unknown_types,
        staleness=staleness(run, export).to_dict(),
    )
    for node_type, uids in new.uids.items():
        vectors, _ = new.spaces[FUSED][node_type]
        report.written += writeback.write_embeddings(store, run.run_id, uids, vectors)
    clock.lap("write")
    if new.count:
        report.appended = append_nodes(run, new.uids, new.raw, new.spaces)
    clock.lap("append")
    active = registry.active if registry is not None else None
    if active is not None and active.run_id == run.run_id:
        report.served = registry.refresh()
    clock.lap("index")
    report.seconds = clock.laps
    log.info(
        "refreshed %s: %d new nodes embedded, %d written", run.run_id, new.count, report.written
    )
    return report


@dataclass
class RetrainReport:
    """What :func:`retrain_if_stale` did; :meth:`to_json` is ``mmgraph retrain-if-stale --json``.

    ``action`` is ``none`` (fresh enough), ``promoted`` or ``kept``; after a retrain,
    ``run_id`` names the new run, and ``validation_mrr`` and ``metrics`` compare the two runs.
    """

    active_run_id: str
    threshold: float
    staleness: dict[str, Any]
    stale: bool
    action: str = "none"
    message: str = "fresh enough"
    run_id: str | None = None
    promoted: bool = False
    validation_mrr: dict[str, float | None] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.run_id is None:  # no retrain: the retrain's fields are not part of the answer
            for key in ("run_id", "promoted", "validation_mrr", "metrics"):
                out.pop(key)
        return out


def retrain_if_stale(
    settings: Settings,
    store: GraphStore,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_gain: float = 0.0,
    registry: Registry | None = None,
) -> RetrainReport:
    """Retrain the promoted run's model when the graph has outgrown it, and promote the new run
    only if its validation MRR is at least the promoted run's plus ``min_gain`` on the same
    split (see the module)."""
    check_threshold(threshold)
    active = load_run(settings.home)
    export = export_graph(settings, store)
    found = staleness(active, export)
    report = RetrainReport(active.run_id, threshold, found.to_dict(), found.exceeds(threshold))
    if not report.stale:
        return report
    split = split_graph(export.data, split_config(active))
    result = run_experiment(
        model=active.model,
        split=split,
        uids=export.uids,
        train_config=train_config(active),
        model_options=dict(active.config.get("model_options", {})),
        home=settings.home,
    )
    candidate = load_run(settings.home, result.run_id)
    new_mrr = validation_metrics(candidate, split)["mrr"]
    try:
        old_mrr = validation_metrics(active, split)["mrr"]
    except GraphMismatchError as e:
        log.warning("the promoted run cannot embed the current graph (%s): promoting", e)
        old_mrr = None
    promote = old_mrr is None or (new_mrr is not None and new_mrr >= old_mrr + min_gain)
    if promote:
        promote_run(settings, store, candidate.run_id)
        if registry is not None:
            registry.use(candidate.run_id)
    report.action = "promoted" if promote else "kept"
    report.message = (
        f"promoted {candidate.run_id}"
        if promote
        else f"kept {active.run_id}: the new run's validation MRR is worse"
    )
    report.run_id, report.promoted = candidate.run_id, promote
    report.validation_mrr = {"active": old_mrr, "candidate": new_mrr, "min_gain": min_gain}
    report.metrics = {"active": active.metrics, "candidate": candidate.metrics}
    return report


def refresh(settings: Settings) -> RefreshReport:
    """:func:`refresh_embeddings` on the configured Neo4j (``mmgraph refresh``)."""
    with open_store(settings) as store:
        return refresh_embeddings(settings, store)


def retrain(settings: Settings, *, threshold: float, min_gain: float) -> RetrainReport:
    """:func:`retrain_if_stale` on the configured Neo4j (``mmgraph retrain-if-stale``)."""
    with open_store(settings) as store:
        return retrain_if_stale(settings, store, threshold=threshold, min_gain=min_gain)


class _Clock:
    """Seconds per step, in order."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
