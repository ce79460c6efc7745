"""``mmgraph stats``, ``runs``, ``neo4j start|stop|status`` and ``datasets list|fetch``: the graph's
counts and audit trail, the local Neo4j, and the datasets that ship in registry packages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mmgraph.core.config import Settings
from mmgraph.service.cli.options import JsonOption
from mmgraph.service.cli.output import emit_json, errors, print_table

if TYPE_CHECKING:
    from mmgraph.service.workflows.graph import LocalStatus

neo4j_app = typer.Typer(
    help="The local Neo4j (used when NEO4J_URI is unset).", no_args_is_help=True
)
datasets_app = typer.Typer(
    help="Real public datasets that ship in registry packages.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add ``stats``, ``runs``, ``neo4j`` and ``datasets`` to ``app``."""
    app.command()(stats)
    app.command()(runs)
    app.add_typer(neo4j_app, name="neo4j")
    app.add_typer(datasets_app, name="datasets")


def stats(as_json: JsonOption = False) -> None:
    """Nodes by type label and relationships by type."""
    from mmgraph.service.workflows.graph import counts

    found = counts(Settings.from_env())
    if as_json:
        emit_json(found.to_dict())
        return
    rows = [["node", label, n] for label, n in found.nodes.items()]
    rows += [["relationship", rel_type, n] for rel_type, n in found.relationships.items()]
    print_table("graph", ["kind", "type", "count"], rows)


def runs(
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The audit trail of ingest runs."""
    from mmgraph.service.workflows.graph import ingest_runs

    found = ingest_runs(Settings.from_env(), limit)
    if as_json:
        emit_json({"runs": found})
        return
    columns = ("id", "status", "source", "nodes_written", "relationships_written", "quarantined")
    print_table("ingest runs", columns, [[row.get(c, "") for c in columns] for row in found])


@neo4j_app.command("start")
def neo4j_start(
    gds: Annotated[
        bool, typer.Option("--gds", help="Load Graph Data Science (FastRP, Louvain, ...).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start the local Neo4j in the background (it keeps running after this command)."""
    from mmgraph.service.workflows.graph import start_local

    _report_server(start_local(Settings.from_env(), gds), as_json)


@neo4j_app.command("stop")
def neo4j_stop(as_json: JsonOption = False) -> None:
    """Stop the local Neo4j started by ``mmgraph neo4j start``."""
    from mmgraph.service.workflows.graph import stop_local

    stopped = stop_local(Settings.from_env())
    if as_json:
        emit_json({"stopped": stopped})
    else:
        errors().print("stopped" if stopped else "no local Neo4j was running")


@neo4j_app.command("status")
def neo4j_status(as_json: JsonOption = False) -> None:
    """Whether the local Neo4j runs, and where."""
    from mmgraph.service.workflows.graph import local_status

    _report_server(local_status(Settings.from_env()), as_json)


def _report_server(status: LocalStatus, as_json: bool) -> None:
    if as_json:
        emit_json(status.to_json())
    elif status.server is None:
        errors().print(f"no local Neo4j runs for {status.home}")
    else:
        server = status.server
        errors().print(f"local Neo4j runs at {server.uri} (pid {server.pid}), home {status.home}")


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name.")], as_json: JsonOption = False
) -> None:
    """Fetch a dataset's packages into the cache (once; later calls return at once)."""
    from mmgraph.service.workflows.graph import fetch_dataset

    root = fetch_dataset(Settings.from_env(), name)
    if as_json:
        emit_json({"dataset": name, "root": str(root)})
    else:
        typer.echo(str(root))


@datasets_app.command("list")
def datasets_list(as_json: JsonOption = False) -> None:
    """The datasets mmgraph can fetch and ingest by name."""
    from mmgraph.ingest.datasets import DATASETS

    rows = [
        {"name": d.name, "description": d.description, "license": d.license}
        for d in DATASETS.values()
    ]
    if as_json:
        emit_json({"datasets": rows})
        return
    print_table("datasets", ["name", "description", "license"], [list(r.values()) for r in rows])
