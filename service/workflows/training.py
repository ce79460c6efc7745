"""Train, evaluate and promote: the graph exported once (through its cache), split, every model
asked for trained on that split, and the run to serve promoted. The CLI's ``train`` and
``evaluate`` call these; ``retrain-if-stale`` shares the export."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmgraph.core.config import Settings
from mmgraph.gnn.data import GraphExport, export_heterodata
from mmgraph.gnn.experiment import Comparison, compare_models, run_experiment
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig
from mmgraph.graph.connection import open_store
from mmgraph.graph.gds import GdsUnavailableError, fastrp_embeddings
from mmgraph.graph.store import GraphStore
from mmgraph.service.workflows.promotion import promote_run

Progress = Callable[[str, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainOutcome:
    """A trained run: its id, model, test metrics, directory, and whether it was promoted."""

    run_id: str | None
    model: str
    metrics: dict[str, float | None]
    path: Path | None
    promoted: bool

    def to_json(self) -> dict[str, Any]:
        """The shape ``mmgraph train --json`` prints."""
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class Evaluation:
    """Every model on one split (the table and what the report draws), where the report was
    written, and why the FastRP row is missing when it was asked for and could not be had."""

    comparison: Comparison
    report: Path
    fastrp_missing: str | None = None


def export_graph(settings: Settings, store: GraphStore) -> GraphExport:
    """The current graph as ``HeteroData``, through the export cache under the home (reused
    while the graph's ingest state is the same)."""
    return export_heterodata(store, cache_dir=settings.home / "cache" / "export")


def train(
    settings: Settings,
    *,
    model: str,
    split: SplitConfig,
    config: TrainConfig,
    promote: bool = False,
    progress: Progress | None = None,
    nproc: int = 1,
) -> TrainOutcome:
    """Train ``model`` on the graph in Neo4j (self-supervised link prediction, early stopping on
    validation MRR), evaluate it on held-out edges, save it as a run, and promote it if asked.
    With ``nproc`` above 1, that many ranks on this machine train it together (no per-epoch
    progress: it cannot cross processes)."""
    with open_store(settings) as store:
        export = export_graph(settings, store)
        kwargs: dict[str, Any] = {
            "model": model,
            "split": split_graph(export.data, split),
            "uids": export.uids,
            "train_config": config,
            "home": settings.home,
        }
        if nproc > 1:
            from mmgraph.gnn.launch import run_experiment_distributed

            result = run_experiment_distributed(nproc=nproc, **kwargs)
        else:
            result = run_experiment(
                **kwargs,
                progress=(lambda epoch, row: progress(model, epoch, row)) if progress else None,
            )
        if promote and result.run_id:
            promote_run(settings, store, result.run_id)
    return TrainOutcome(result.run_id, model, result.metrics, result.path, promote)


def evaluate(
    settings: Settings,
    *,
    models: Sequence[str],
    split: SplitConfig,
    config: TrainConfig,
    fastrp: bool = True,
    report: Path | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Train what is missing and evaluate ``models`` on one split (link prediction, clustering,
    text->image retrieval), with the raw features' anchor row and, when asked and the Neo4j in
    use has GDS, FastRP's; write the markdown report (default ``<home>/reports/latest``)."""
    with _store_for_evaluation(settings, fastrp) as (store, missing):
        export = export_graph(settings, store)
        linked = split_graph(export.data, split)
        comparison = compare_models(
            split=linked,
            uids=export.uids,
            models=models,
            train_config=config,
            home=settings.home,
            fastrp=_fastrp(store, export.uids, split.seed) if fastrp and not missing else None,
            progress=progress,
        )
    # Imported once the models are trained: matplotlib and PCA (about 30 MB) would otherwise
    # sit under every training step's peak.
    from mmgraph.gnn.report import write_report

    folder = report or settings.home / "reports" / "latest"
    path = write_report(folder, comparison.table, comparison.histories, comparison.maps)
    return Evaluation(comparison, path, missing)


@contextmanager
def _store_for_evaluation(
    settings: Settings, fastrp: bool
) -> Iterator[tuple[GraphStore, str | None]]:
    """The store, with GDS when FastRP is asked for and can be had; without it, and the reason
    FastRP's row is left out (``None`` when it is not), when the Neo4j in use has no GDS."""
    missing = None
    if fastrp:
        stack = ExitStack()
        try:
            store = stack.enter_context(open_store(settings, gds=True))
        except GdsUnavailableError as e:
            missing = str(e)
        else:
            with stack:
                yield store, None
            return
    with open_store(settings) as store:
        yield store, missing


def _fastrp(
    store: GraphStore, uids: dict[str, list[str]], seed: int
) -> Callable[[list[tuple[str, str]]], dict[str, np.ndarray]]:
    """The FastRP anchor: GDS embeddings of the test graph's edges, per node type."""

    def embed(edges: list[tuple[str, str]]) -> dict[str, np.ndarray]:
        nodes = [uid for rows in uids.values() for uid in rows]
        order, matrix = fastrp_embeddings(store, edges, nodes, seed=seed)
        row = {uid: i for i, uid in enumerate(order)}
        return {t: matrix[[row[u] for u in rows]] for t, rows in uids.items()}

    return embed
