"""``mmgraph cypher``: an analyst's read-only Cypher on the graph; ``mmgraph analysts
write-clusters|write-predictions``: the promoted model's clusters and predicted links written back
to Neo4j (``:Cluster``/``IN_CLUSTER``, ``:PREDICTED``) so that Cypher can read them
(:mod:`mmgraph.service.workflows.analysts`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.progress import Progress

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError
from mmgraph.service.cli.options import (
    ClustersOption,
    JsonOption,
    MethodOption,
    MinClusterOption,
    NeighborsOption,
    RunOption,
    SeedOption,
    SpaceOption,
    TypesOption,
    cluster_options,
)
from mmgraph.service.cli.output import errors, print_table
from mmgraph.service.serving.options import MAX_K

analysts_app = typer.Typer(
    help="Write the promoted model's clusters and predicted links back to Neo4j for Cypher.",
    no_args_is_help=True,
)
DEFAULT_LIMIT = 1000
CELL_CHARS = 120


class ParameterFormatError(InvalidArgumentError):
    """A ``--param`` that is not ``NAME=VALUE``."""


def register(app: typer.Typer) -> None:
    """Add ``cypher`` and the ``analysts`` command group to ``app``."""
    app.command("cypher")(cypher_command)
    app.add_typer(analysts_app, name="analysts")


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as (name, value): the value read as JSON when it parses (``3``, ``[1, 2]``,
    ``"123"``, ``true``), else kept as the string it is (``emoji:1f600``)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParameterFormatError(f"--param must be NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def cypher_command(
    query: Annotated[str, typer.Argument(help="A read-only Cypher query.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="A query parameter NAME=VALUE (repeatable); VALUE is read as JSON when it parses "
            '(3, [1, 2], "123"), else as a string.',
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most rows to print.")] = (
        DEFAULT_LIMIT
    ),
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"columns": [...], "rows": [[...], ...]}.')
    ] = False,
) -> None:
    """Run a read-only Cypher query on the graph and print its rows. Queries that would write
    (CREATE, MERGE, DELETE, SET, REMOVE, schema commands) are refused before anything runs."""
    from mmgraph.service.workflows.analysts import read_only_query

    params = dict(parse_param(p) for p in param or [])
    result = read_only_query(Settings.from_env(), query, params, limit)
    if result.truncated:
        errors().print(f"only the first {limit} rows are shown (--limit)")
    if as_json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    rows = [[_cell(v) for v in row] for row in result.rows]
    print_table(f"{len(result.rows)} row(s)", result.columns, rows)


def _cell(value: Any) -> Any:
    if isinstance(value, int | float | None):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


@analysts_app.command("write-clusters")
def write_clusters_command(
    types: TypesOption = None,
    method: MethodOption = "kmeans",
    clusters: ClustersOption = 0,
    min_cluster_size: MinClusterOption = 0,
    neighbors: NeighborsOption = 0,
    space: SpaceOption = "",
    seed: SeedOption = 0,
    run: RunOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cluster the nodes of --type as the service does (mmgraph query cluster) and write the
    result back: (:Cluster {id: "<run>/<method>/<k>", run, method, cluster, size, central})
    nodes with (:Entity)-[:IN_CLUSTER]->(:Cluster), replacing that run and method's clusters."""
    from mmgraph.service.workflows.analysts import write_clusters

    options = cluster_options(method, clusters, min_cluster_size, neighbors, space, seed)
    written = write_clusters(Settings.from_env(), types=types or (), options=options, run=run)
    if as_json:
        print(json.dumps(written.to_json()))
    else:
        errors().print(
            f"model {written.run_id}: {written.clusters} {method} clusters of {written.members} "
            "nodes written to Neo4j"
        )


@analysts_app.command("write-predictions")
def write_predictions_command(
    relation: Annotated[str, typer.Option(help="The relationship type to predict, e.g. HAS_TAG.")],
    types: TypesOption = None,
    uids: Annotated[list[str] | None, typer.Option("--uid", help="A source node (repeatable).")] = (
        None
    ),
    k: Annotated[int, typer.Option("--k", min=1, max=MAX_K, help="Links per source.")] = 5,
    dst_type: Annotated[str, typer.Option(help="Only links to nodes of this type.")] = "",
    run: RunOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict the k most likely new RELATION links from each source node (--uid, the nodes of
    --type, or by default every node the model scores RELATION from) as the service does
    (mmgraph query predict-links) and write them back as [:PREDICTED {relation, score, model}],
    replacing that model's RELATION predictions from those sources."""
    from mmgraph.service.workflows.analysts import write_predictions

    with Progress(console=errors(), disable=as_json) as bar:
        written = write_predictions(
            Settings.from_env(),
            relation=relation,
            k=k,
            types=types or (),
            uids=uids or (),
            dst_type=dst_type,
            run=run,
            track=lambda sources: bar.track(sources, description=f"predict {relation}"),
        )
    if as_json:
        print(json.dumps(written.to_json()))
    else:
        errors().print(
            f"model {written.run_id}: {written.links} predicted {relation} links from "
            f"{written.sources} nodes written to Neo4j"
        )
