"""``mmgraph train``, ``mmgraph evaluate`` and ``mmgraph models list|promote``: fused embeddings
from whatever graph is in Neo4j, one evaluation for every model, and the promoted run written
back to Neo4j for analysts (:mod:`mmgraph.service.workflows.training`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mmgraph.core.config import Settings
from mmgraph.gnn.names import MODEL_NAMES, REPORT_METRICS
from mmgraph.service.cli.options import JsonOption
from mmgraph.service.cli.output import emit_json, errors, print_table

if TYPE_CHECKING:
    from mmgraph.gnn.split import SplitConfig

models_app = typer.Typer(help="Trained model runs: list them, promote one.", no_args_is_help=True)

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


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``models`` to ``app``."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.add_typer(models_app, name="models")


def _split(targets: list[str] | None, label: str, seed: int) -> SplitConfig:
    from mmgraph.gnn.split import SplitConfig

    return SplitConfig(
        target_relations=tuple(targets or ("HAS_TAG",)),
        label_relation=label or None,
        seed=seed,
    )


@contextmanager
def _progress(epochs: int, quiet: bool) -> Iterator[Any]:
    """A progress bar per model trained (epochs and validation MRR), on stderr."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs  val MRR {task.fields[mrr]:.3f}"),
        TimeElapsedColumn(),
        console=errors(),
        disable=quiet,
    )
    tasks: dict[str, Any] = {}

    def update(name: str, epoch: int, row: dict[str, float]) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(f"train {name}", total=epochs, mrr=0.0)
        bar.update(tasks[name], completed=epoch, mrr=row["val_mrr"])

    with bar:
        yield update


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
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Ranks on this machine training together (torch.distributed: gloo on the CPU, "
            "NCCL on GPUs); several machines: see `python -m mmgraph.gnn.launch`.",
        ),
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """Train one model on the graph in Neo4j (self-supervised link prediction, early stopping
    on validation MRR), evaluate it on held-out edges, and save it as a run."""
    from mmgraph.gnn.train import TrainConfig
    from mmgraph.service.workflows.training import train

    config = TrainConfig(epochs=epochs, seed=seed, batch_size=batch_size, max_seconds=max_seconds)
    with _progress(epochs, as_json) as progress:
        outcome = train(
            Settings.from_env(),
            model=model,
            split=_split(target_relation, label_relation, seed),
            config=config,
            promote=promote,
            progress=progress,
            nproc=nproc,
        )
    if as_json:
        emit_json(outcome.to_json())
    else:
        _metrics_table({model: outcome.metrics}, f"run {outcome.run_id}")


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
    from mmgraph.gnn.train import TrainConfig
    from mmgraph.service.workflows.training import evaluate

    with _progress(epochs, as_json) as progress:
        evaluation = evaluate(
            Settings.from_env(),
            models=list(MODEL_NAMES) if all_models else list(model or []),
            split=_split(target_relation, label_relation, seed),
            config=TrainConfig(epochs=epochs, seed=seed, batch_size=batch_size),
            fastrp=fastrp,
            report=report,
            progress=progress,
        )
    if evaluation.fastrp_missing:
        errors().print(f"[yellow]warning:[/yellow] no FastRP row: {evaluation.fastrp_missing}")
    table = evaluation.comparison.table
    if as_json:
        emit_json(table)
    else:
        _metrics_table(table["models"], "evaluation (test edges)")
        errors().print(f"report: {evaluation.report}")


@models_app.command("list")
def models_list(as_json: JsonOption = False) -> None:
    """The trained runs, newest first; the promoted one is marked."""
    from mmgraph.gnn.runs import active_run_id, list_runs

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
        emit_json({"runs": rows})
        return
    print_table(
        "model runs",
        ["run", "model", "created", "test MRR", "active"],
        [[r["run_id"], r["model"], r["created"], r["mrr"], "*" * r["active"]] for r in rows],
    )


@models_app.command("promote")
def models_promote(
    run_id: Annotated[str, typer.Argument(help="The run to promote.")],
    as_json: JsonOption = False,
) -> None:
    """Make a run the one that answers queries, and write its embeddings back to Neo4j as
    ``emb`` with a vector index and a ``:Model`` node (for analysts' Cypher)."""
    from mmgraph.service.workflows.promotion import promote

    written = promote(Settings.from_env(), run_id)
    if as_json:
        emit_json({"run_id": run_id, "embeddings_written": written})
    else:
        errors().print(f"promoted {run_id}: {written} embeddings written to Neo4j")


def _metrics_table(models: dict[str, dict[str, Any]], title: str) -> None:
    print_table(
        title,
        ["model", *REPORT_METRICS],
        [[name, *(metrics.get(k) for k in REPORT_METRICS)] for name, metrics in models.items()],
    )
    for name, metrics in models.items():
        if metrics.get("reason"):
            errors().print(f"{name} does not apply: {metrics['reason']}")
