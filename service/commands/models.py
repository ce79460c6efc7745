"""``mmgraph train``, ``mmgraph evaluate`` and ``mmgraph models list|promote``: fused
embeddings from whatever graph is in Neo4j, one evaluation for every model, and the promoted run
written back to Neo4j for analysts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmgraph.core.config import Settings
from mmgraph.gnn.artifacts import active_run_id, list_runs
from mmgraph.gnn.data import export_heterodata
from mmgraph.gnn.experiment import MODEL_NAMES, compare_models, run_experiment
from mmgraph.gnn.report import write_report
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig
from mmgraph.graph.connection import open_store
from mmgraph.graph.gds import GdsUnavailableError, fastrp_embeddings
from mmgraph.graph.store import GraphStore
from mmgraph.service.errors import cli_errors
from mmgraph.service.promotion import promote_run

console = Console(stderr=True)
models_app = typer.Typer(help="Trained model runs: list them, promote one.")

TargetOption = Annotated[
    list[str] | None,
    typer.Option("--target-relation", help="Relationship type to predict (repeatable)."),
]
LabelOption = Annotated[
    str, typer.Option(help="Relationship giving each node its class (kept out of training).")
]
EpochsOption = Annotated[int, typer.Option(min=1, help="Most training epochs.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the split and the training.")]
BatchOption = Annotated[
    int | None,
    typer.Option(min=1, help="Mini-batch size (sampled neighbourhoods); default full-batch."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON object for programs.")]


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``models`` to ``app``."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.add_typer(models_app, name="models")


def _split_config(targets: list[str] | None, label: str, seed: int) -> SplitConfig:
    return SplitConfig(
        target_relations=tuple(targets or ("HAS_TAG",)),
        label_relation=label or None,
        seed=seed,
    )


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs  val MRR {task.fields[mrr]:.3f}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


def train_command(
    model: Annotated[str, typer.Option(help=f"One of {', '.join(MODEL_NAMES)}.")] = "hgt",
    target_relation: TargetOption = None,
    label_relation: LabelOption = "IN_SUBCATEGORY",
    epochs: EpochsOption = 200,
    seed: SeedOption = 0,
    batch_size: BatchOption = None,
    max_seconds: Annotated[
        float | None, typer.Option(help="Stop training after this many seconds.")
    ] = None,
    promote: Annotated[bool, typer.Option(help="Promote the run when it is trained.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Train one model on the graph in Neo4j (self-supervised link prediction, early stopping
    on validation MRR), evaluate it on held-out edges, and save it as a run."""
    settings = Settings.from_env()
    config = TrainConfig(epochs=epochs, seed=seed, batch_size=batch_size, max_seconds=max_seconds)
    with cli_errors(), open_store(settings) as store:
        export = export_heterodata(store, cache_dir=settings.home / "cache" / "export")
        split = split_graph(export.data, _split_config(target_relation, label_relation, seed))
        with _progress(as_json) as bar:
            task = bar.add_task(f"train {model}", total=epochs, mrr=0.0)
            result = run_experiment(
                model=model,
                split=split,
                uids=export.uids,
                train_config=config,
                home=settings.home,
                progress=lambda e, row: bar.update(task, completed=e, mrr=row["val_mrr"]),
            )
        if promote and result.run_id:
            promote_run(settings, store, result.run_id)
    payload = {
        "run_id": result.run_id,
        "model": model,
        "metrics": result.metrics,
        "path": str(result.path),
        "promoted": promote,
    }
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        _metrics_table({model: result.metrics}, f"run {result.run_id}")


def evaluate_command(
    all_models: Annotated[bool, typer.Option("--all", help="Every model (and FastRP).")] = False,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="A model to evaluate (repeatable).")
    ] = None,
    target_relation: TargetOption = None,
    label_relation: LabelOption = "IN_SUBCATEGORY",
    epochs: EpochsOption = 200,
    seed: SeedOption = 0,
    batch_size: BatchOption = None,
    fastrp: Annotated[
        bool, typer.Option(help="Add the GDS FastRP anchor row (needs GDS in Neo4j).")
    ] = True,
    report: Annotated[
        Path | None, typer.Option(help="Folder of the markdown report (default under home).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train what is missing and evaluate every model on one split: link prediction (MRR,
    Hits@k, AUC), clustering (NMI, ARI) and text->image retrieval (Recall@k)."""
    if not all_models and not model:
        raise typer.BadParameter("give --all or at least one --model")
    settings = Settings.from_env()
    config = TrainConfig(epochs=epochs, seed=seed, batch_size=batch_size)
    names = list(MODEL_NAMES) if all_models else list(model or [])
    with cli_errors(), _store_for_evaluation(settings, fastrp) as (store, has_gds):
        export = export_heterodata(store, cache_dir=settings.home / "cache" / "export")
        split = split_graph(export.data, _split_config(target_relation, label_relation, seed))
        anchor = _fastrp(store, export.uids, seed) if has_gds else None
        with _progress(as_json) as bar:
            tasks: dict[str, Any] = {}

            def progress(name: str, epoch: int, row: dict[str, float]) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"train {name}", total=epochs, mrr=0.0)
                bar.update(tasks[name], completed=epoch, mrr=row["val_mrr"])

            comparison = compare_models(
                split=split,
                uids=export.uids,
                models=names,
                train_config=config,
                home=settings.home,
                fastrp=anchor,
                progress=progress,
            )
    folder = report or settings.home / "reports" / "latest"
    path = write_report(folder, comparison.table, comparison.histories, comparison.maps)
    if as_json:
        typer.echo(json.dumps(comparison.table, indent=2))
    else:
        _metrics_table(comparison.table["models"], "evaluation (test edges)")
        console.print(f"report: {path}")


@contextmanager
def _store_for_evaluation(settings: Settings, fastrp: bool) -> Iterator[tuple[GraphStore, bool]]:
    """The store, with GDS when FastRP is asked for and can be had; without it (and a warning
    that the FastRP row is left out) when the Neo4j in use has no GDS."""
    if fastrp:
        stack = ExitStack()
        try:
            store = stack.enter_context(open_store(settings, gds=True))
        except GdsUnavailableError as e:
            console.print(f"[yellow]warning:[/yellow] no FastRP row: {e}")
        else:
            with stack:
                yield store, True
            return
    with open_store(settings) as store:
        yield store, False


def _fastrp(store: GraphStore, uids: dict[str, list[str]], seed: int):
    """The FastRP anchor: GDS embeddings of the test graph, per node type."""

    def embed(edges: list[tuple[str, str]]) -> dict[str, Any]:
        nodes = [uid for rows in uids.values() for uid in rows]
        order, matrix = fastrp_embeddings(store, edges, nodes, seed=seed)
        row = {uid: i for i, uid in enumerate(order)}
        return {t: matrix[[row[u] for u in rows]] for t, rows in uids.items()}

    return embed


@models_app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """The trained runs, newest first; the promoted one is marked."""
    settings = Settings.from_env()
    active = active_run_id(settings.home)
    rows = [
        {
            "run_id": run.run_id,
            "model": run.model,
            "created": run.created,
            "mrr": run.metrics.get("mrr"),
            "active": run.run_id == active,
        }
        for run in list_runs(settings.home)
    ]
    if as_json:
        typer.echo(json.dumps({"runs": rows}, indent=2))
        return
    table = Table("run", "model", "created", "test MRR", "active", title="model runs")
    for row in rows:
        mrr = "—" if row["mrr"] is None else f"{row['mrr']:.3f}"
        table.add_row(row["run_id"], row["model"], row["created"], mrr, "*" * row["active"])
    Console().print(table)


@models_app.command("promote")
def models_promote(
    run_id: Annotated[str, typer.Argument(help="The run to promote.")],
    as_json: JsonOption = False,
) -> None:
    """Make a run the one that answers queries, and write its embeddings back to Neo4j as
    ``emb`` with a vector index and a ``:Model`` node (for analysts' Cypher)."""
    settings = Settings.from_env()
    with cli_errors(), open_store(settings) as store:
        written = promote_run(settings, store, run_id)
    if as_json:
        typer.echo(json.dumps({"run_id": run_id, "embeddings_written": written}))
    else:
        console.print(f"promoted {run_id}: {written} embeddings written to Neo4j")


def _metrics_table(models: dict[str, dict[str, Any]], title: str) -> None:
    keys = ("mrr", "hits@1", "hits@3", "hits@10", "auc", "nmi", "ari", "recall@1", "recall@10")
    table = Table("model", *keys, "train s", title=title)
    for name, metrics in models.items():
        cells = ["—" if metrics.get(k) is None else f"{metrics[k]:.3f}" for k in keys]
        seconds = metrics.get("train_seconds")
        table.add_row(name, *cells, "—" if seconds is None else f"{seconds:.1f}")
    Console().print(table)
