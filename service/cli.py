"""``mmgraph``: the command line for people (and scripts: every report has ``--json``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from neo4j.exceptions import AuthError, ServiceUnavailable
from rich.console import Console
from rich.table import Table

from mmgraph.core.config import Settings
from mmgraph.graph.connection import ConfigurationError, open_store
from mmgraph.graph.local_neo4j import (
    LocalNeo4j,
    LocalNeo4jError,
    running_server,
    stop_running_server,
)
from mmgraph.graph.store import StoreError
from mmgraph.ingest.datasets import (
    DATASETS,
    Dataset,
    DatasetError,
    UnknownDatasetError,
    get_dataset,
)
from mmgraph.ingest.pipeline import IngestError, IngestOptions, IngestResult, ingest, ingest_files
from mmgraph.ingest.readers import UnsupportedFileError
from mmgraph.ingest.scheduled import run_scheduled
from mmgraph.service.commands import cypher, demo, fresh, models, query, serve

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
neo4j_app = typer.Typer(help="The local Neo4j (used when NEO4J_URI is unset).")
datasets_app = typer.Typer(help="Real public datasets that ship in registry packages.")
app.add_typer(neo4j_app, name="neo4j")
app.add_typer(datasets_app, name="datasets")
models.register(app)
serve.register(app)
query.register(app)
demo.register(app)
fresh.register(app)
cypher.register(app)

console = Console(stderr=True)
# Errors a person can act on: printed as one line, exit code 1, no traceback.
USER_ERRORS = (
    AuthError,
    ConfigurationError,
    DatasetError,
    FileNotFoundError,
    LocalNeo4jError,
    ServiceUnavailable,
    StoreError,
    UnsupportedFileError,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON object for programs.")]
EXIT_PARTIAL = 3


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn an error a person can act on into one printed line and exit code 1."""
    try:
        yield
    except USER_ERRORS as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from e


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """mmgraph: multimodal items and their relations as a graph in Neo4j."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command("ingest")
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
    as_json: JsonOption = False,
) -> None:
    """Validate, encode and write records as one audited run; bad records go to quarantine.

    Exit code: 0 ok, 3 partial (some records quarantined), 1 failed; with --from-dir also 75
    (another run holds the folder's lock, or the database is unavailable: try again later).
    """
    if sum(map(bool, (paths, dataset, from_dir))) != 1:
        raise typer.BadParameter("give exactly one of PATHS, --dataset or --from-dir")
    settings = Settings.from_env()
    if from_dir is not None:
        folder, code = run_scheduled(
            settings, from_dir, batch_size=batch_size, encode_text=text, encode_images=images
        )
        if as_json:
            _emit(folder.to_json())
        else:
            _report_folder(folder.to_json())
        raise typer.Exit(code)
    options = IngestOptions(
        quarantine_dir=settings.home / "quarantine",
        batch_size=batch_size,
        encode_text=text,
        encode_images=images,
        max_image_pixels=settings.max_image_pixels,
    )
    try:
        with open_store(settings) as store:
            if dataset:
                spec = _dataset(dataset)
                root = spec.fetch(settings.cache)
                result = ingest(store, spec.records(root), f"dataset:{dataset}", options)
            else:
                result = ingest_files(store, paths or [], options)
    except IngestError as e:
        result = e.result
        console.print(f"[red]error:[/red] {e}")
    except USER_ERRORS as e:
        # No run started; scripts reading --json still get the fixed shape.
        console.print(f"[red]error:[/red] {e}")
        result = IngestResult(run_id=None, status="failed")
    _report_ingest(result, as_json)
    if result.status == "failed":
        raise typer.Exit(1)
    if result.status == "partial":
        raise typer.Exit(EXIT_PARTIAL)


def _report_folder(report: dict[str, Any]) -> None:
    table = Table(
        "file",
        "outcome",
        "run",
        "nodes",
        "relationships",
        "quarantined",
        "reason",
        title=f"drop folder {report['folder']}",
    )
    for row in report["files"]:
        table.add_row(
            *(
                str(row.get(k) or "")
                for k in (
                    "file",
                    "outcome",
                    "run_id",
                    "nodes_written",
                    "relationships_written",
                    "quarantined",
                    "reason",
                )
            )
        )
    Console().print(table)
    if report.get("stopped"):
        console.print(f"[yellow]stopped:[/yellow] {report['stopped']}: {report.get('error')}")


def _dataset(name: str) -> Dataset:
    try:
        return get_dataset(name)
    except UnknownDatasetError as e:
        raise typer.BadParameter(str(e)) from e


def _report_ingest(result: IngestResult, as_json: bool) -> None:
    if as_json:
        _emit(result.to_json())
        return
    table = Table(title=f"ingest run {result.run_id}: {result.status}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in result.counts().items():
        table.add_row(key, str(value))
    table.add_row("seconds", f"{result.seconds:.1f}")
    for step, seconds in result.timings.items():
        table.add_row(f"  {step} (s)", f"{seconds:.1f}")
    Console().print(table)
    if result.quarantine_file:
        console.print(f"quarantined records: {result.quarantine_file}")


@app.command()
def stats(as_json: JsonOption = False) -> None:
    """Nodes by type label and relationships by type."""
    with _user_errors(), open_store(Settings.from_env()) as store:
        counts = store.counts()
    if as_json:
        _emit(counts.to_dict())
        return
    table = Table(title="graph")
    table.add_column("kind")
    table.add_column("type")
    table.add_column("count", justify="right")
    for label, n in counts.nodes.items():
        table.add_row("node", label, str(n))
    for rel_type, n in counts.relationships.items():
        table.add_row("relationship", rel_type, str(n))
    Console().print(table)


@app.command()
def runs(
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The audit trail of ingest runs."""
    with _user_errors(), open_store(Settings.from_env()) as store:
        rows = store.runs(limit)
    if as_json:
        _emit({"runs": rows})
        return
    columns = ("id", "status", "source", "nodes_written", "relationships_written", "quarantined")
    table = Table(*columns, title="ingest runs")
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    Console().print(table)


@neo4j_app.command("start")
def neo4j_start(
    gds: Annotated[
        bool, typer.Option("--gds", help="Load Graph Data Science (FastRP, Louvain, ...).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start the local Neo4j in the background (it keeps running after this command)."""
    settings = Settings.from_env()
    with _user_errors():
        server = running_server(settings.home)
        if server is not None and gds and not server.gds:
            raise typer.BadParameter(
                "a local Neo4j without GDS already runs: `mmgraph neo4j stop` first"
            )
        if server is None:
            LocalNeo4j.from_settings(settings, gds=gds).start(detach=True)
            server = running_server(settings.home)
    _report_server(settings, server, as_json)


@neo4j_app.command("stop")
def neo4j_stop(as_json: JsonOption = False) -> None:
    """Stop the local Neo4j started by ``mmgraph neo4j start``."""
    settings = Settings.from_env()
    with _user_errors():
        stopped = stop_running_server(settings.home)
    if as_json:
        _emit({"stopped": stopped})
    else:
        console.print("stopped" if stopped else "no local Neo4j was running")


@neo4j_app.command("status")
def neo4j_status(as_json: JsonOption = False) -> None:
    """Whether the local Neo4j runs, and where."""
    settings = Settings.from_env()
    _report_server(settings, running_server(settings.home), as_json)


def _report_server(settings: Settings, server: Any, as_json: bool) -> None:
    payload = {
        "running": server is not None,
        "uri": server.uri if server else None,
        "pid": server.pid if server else None,
        "gds": server.gds if server else None,
        "home": str(settings.home),
    }
    if as_json:
        _emit(payload)
    elif server is None:
        console.print(f"no local Neo4j runs for {settings.home}")
    else:
        console.print(f"local Neo4j runs at {server.uri} (pid {server.pid}), home {settings.home}")


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name.")], as_json: JsonOption = False
) -> None:
    """Fetch a dataset's packages into the cache (once; later calls return at once)."""
    spec = _dataset(name)
    with _user_errors():
        root = spec.fetch(Settings.from_env().cache)
    if as_json:
        _emit({"dataset": name, "root": str(root)})
    else:
        typer.echo(str(root))


@datasets_app.command("list")
def datasets_list(as_json: JsonOption = False) -> None:
    """The datasets mmgraph can fetch and ingest by name."""
    rows = [
        {"name": d.name, "description": d.description, "license": d.license}
        for d in DATASETS.values()
    ]
    if as_json:
        _emit({"datasets": rows})
        return
    table = Table("name", "description", "license", title="datasets")
    for row in rows:
        table.add_row(row["name"], row["description"], row["license"])
    Console().print(table)
