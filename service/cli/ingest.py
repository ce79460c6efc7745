"""``mmgraph ingest``: batch files, a dataset by name, or a drop folder, as audited runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmgraph.core.config import Settings
from mmgraph.core.errors import EXIT_FAILED, EXIT_PARTIAL, MmgraphError
from mmgraph.ingest.datasets import DATASETS
from mmgraph.ingest.progress import READING, Progress, ProgressListener
from mmgraph.service.cli.options import JsonOption
from mmgraph.service.cli.output import emit_json, errors, print_table

if TYPE_CHECKING:
    from mmgraph.ingest.options import IngestResult


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to ``app``."""
    app.command("ingest")(ingest_command)


def ingest_command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="JSONL, CSV or Parquet files of records.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help=f"Ingest a dataset by name: {', '.join(DATASETS)}.")
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from-dir",
            help="A drop folder: ingest the files that arrived since the last run, then exit "
            "(for cron / systemd timers; see docs/scheduling.md).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Records per write transaction.")] = 2000,
    text: Annotated[bool, typer.Option(help="Encode the text modality.")] = True,
    images: Annotated[bool, typer.Option(help="Encode the image modality.")] = True,
    bulk: Annotated[
        bool | None,
        typer.Option(
            "--bulk/--no-bulk",
            help="Load through Neo4j's offline importer (only the local database, only while "
            "empty; it is stopped and started again), or never. Default: when the local "
            "database is known empty.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate, encode and write records as one audited run; bad records go to quarantine.

    Exit code: 0 ok, 3 partial (some records quarantined, or written without a refused
    picture), 1 failed (every record quarantined), else the code of the error that stopped it
    (README: exit codes); with --from-dir 75 also when another run holds the folder's lock (try
    again later).
    """
    if sum(map(bool, (paths, dataset, from_dir))) != 1:
        raise typer.BadParameter("give exactly one of PATHS, --dataset or --from-dir")
    if from_dir is not None and bulk:
        raise typer.BadParameter("--bulk loads files or a dataset, not a drop folder")
    from mmgraph.ingest.options import IngestError, IngestResult
    from mmgraph.service.workflows import ingest as workflow

    settings = Settings.from_env()
    options = {"batch_size": batch_size, "encode_text": text, "encode_images": images}
    if from_dir is not None:
        folder = workflow.ingest_drop_folder(settings, from_dir, **options)
        if as_json:
            emit_json(folder.to_json())
        else:
            _report_folder(folder.to_json())
        raise typer.Exit(folder.exit_code)
    try:
        with _progress_bar(not as_json) as progress:
            if dataset:
                result = workflow.ingest_dataset(
                    settings, dataset, bulk=bulk, progress=progress, **options
                )
            else:
                result = workflow.ingest_paths(
                    settings, paths or [], bulk=bulk, progress=progress, **options
                )
    except IngestError as e:
        _report_ingest(e.result, as_json)
        raise
    except MmgraphError:
        # No run started; scripts reading --json still get the fixed shape.
        _report_ingest(IngestResult(run_id=None, status="failed"), as_json)
        raise
    _report_ingest(result, as_json)
    if result.status == "failed":
        raise typer.Exit(EXIT_FAILED)
    if result.status == "partial":
        raise typer.Exit(EXIT_PARTIAL)


@contextmanager
def _progress_bar(wanted: bool) -> Iterator[ProgressListener | None]:
    """A progress bar on stderr when ``wanted`` and stderr is a terminal: the stage, its bar
    and time left when its size is known (bytes of files, relations), records read and the
    stage's rate per second."""
    console = errors()
    if not (wanted and console.is_terminal):
        yield None
        return
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.fields[records]:>12,} records  {task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Bar(*columns, console=console, transient=True) as bar:
        task = bar.add_task(READING, total=None, records=0, rate=0.0)
        stage, since = READING, time.monotonic()

        def show(progress: Progress) -> None:
            nonlocal stage, since
            if progress.stage != stage:
                stage, since = progress.stage, time.monotonic()
                bar.reset(task, description=stage)
            # Records per second while reading; relations per second while writing them.
            count = progress.records if stage == READING else progress.done
            rate = count / max(time.monotonic() - since, 1e-6)
            bar.update(
                task,
                completed=progress.done,
                total=progress.total,
                records=progress.records,
                rate=rate,
            )

        yield show


def _report_ingest(result: IngestResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    rows: list[list[Any]] = [[key, value] for key, value in result.counts().items()]
    rows.append(["seconds", round(result.seconds, 1)])
    rows += [[f"  {step} (s)", round(seconds, 1)] for step, seconds in result.timings.items()]
    print_table(f"ingest run {result.run_id}: {result.status}", ["what", "count"], rows, 1)
    if result.quarantine_file:
        what = "quarantined records" if result.quarantined else "records written without a field"
        if result.quarantined and result.warnings:
            what += " and records written without a field"
        errors().print(f"{what}: {result.quarantine_file}")


def _report_folder(report: dict[str, Any]) -> None:
    columns = (
        "file",
        "outcome",
        "run_id",
        "nodes_written",
        "relationships_written",
        "quarantined",
        "reason",
    )
    rows = [[row.get(k) or "" for k in columns] for row in report["files"]]
    print_table(f"drop folder {report['folder']}", columns, rows)
    if report.get("stopped"):
        errors().print(f"[yellow]stopped:[/yellow] {report['stopped']}: {report.get('error')}")
