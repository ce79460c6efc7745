"""``mmgraph cypher``: an analyst's read-only Cypher on the graph; ``mmgraph analysts
write-clusters|write-predictions``: the promoted model's clusters and predicted links written back
to Neo4j (``:Cluster``/``IN_CLUSTER``, ``:PREDICTED``) so that Cypher can read them.

A query is refused twice over: its plan (``EXPLAIN``, which runs nothing) must be read-only, and it
runs in a READ transaction, in which the server itself refuses any write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

import typer
from neo4j.exceptions import AuthError, ClientError, CypherSyntaxError
from neo4j.graph import Node, Path, Relationship
from neo4j.spatial import Point
from neo4j.time import Date, DateTime, Duration, Time
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn.artifacts import load_run
from mmgraph.graph.connection import open_store
from mmgraph.graph.store import GraphStore
from mmgraph.service import queries
from mmgraph.service.errors import cli_errors
from mmgraph.service.registry import ActiveModel

console = Console(stderr=True)
analysts_app = typer.Typer(
    help="Write the promoted model's clusters and predicted links back to Neo4j for Cypher.",
    no_args_is_help=True,
)

READ_ONLY = (
    "mmgraph cypher runs read-only queries; CREATE/MERGE/DELETE/SET/REMOVE and schema commands "
    "are refused"
)
ACCESS_MODE = "Neo.ClientError.Statement.AccessMode"
PARAMETER_MISSING = "Neo.ClientError.Statement.ParameterMissing"
# What a plan's query type means, for the refusal's message.
PLAN_KINDS = {"w": "writes", "rw": "reads and writes", "s": "changes the schema or the DBMS"}
DEFAULT_LIMIT = 1000
CELL_CHARS = 120
# A query that already asks for its plan or profile is checked with EXPLAIN in place of that word.
_EXECUTION_MODE = re.compile(r"^\s*(?:EXPLAIN|PROFILE)\b", re.IGNORECASE)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON object for programs.")]
RunOption = Annotated[
    str | None, typer.Option("--run", help="The model run (default: the promoted one).")
]
TypesOption = Annotated[
    list[str] | None, typer.Option("--type", help="Nodes of this type (repeatable).")
]


class CypherQueryError(InvalidArgumentError):
    """Neo4j refused the query: a syntax error, a missing parameter, an unknown procedure..."""


class WriteQueryRefusedError(CypherQueryError):
    """The query would write (data or schema); ``mmgraph cypher`` only reads."""


class ParameterFormatError(InvalidArgumentError):
    """A ``--param`` that is not ``NAME=VALUE``."""


class NothingToPredictError(InvalidArgumentError):
    """No source node to predict links from: the model scores no such relation from them."""


@dataclass(frozen=True)
class QueryRows:
    """A read query's columns, its rows as JSON-able values, and whether rows were left out."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}


def register(app: typer.Typer) -> None:
    """Add ``cypher`` and the ``analysts`` command group to ``app``."""
    app.command("cypher")(cypher_command)
    app.add_typer(analysts_app, name="analysts")


# -- read-only queries --------------------------------------------------------------------------


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


def jsonable(value: Any) -> Any:
    """A driver value as JSON: a node as its properties (byte arrays left out), a relationship as
    its properties and ``type``, a path as its nodes and relationships in order, temporal values
    as ISO 8601 strings, byte arrays as ``"<N bytes>"``."""
    if isinstance(value, Node):
        return {k: jsonable(v) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(value, Relationship):
        props = {k: jsonable(v) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
        return {**props, "type": value.type}
    if isinstance(value, Path):
        out: list[Any] = [jsonable(value.start_node)]
        for rel, node in zip(value.relationships, value.nodes[1:], strict=True):
            out += [jsonable(rel), jsonable(node)]
        return out
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, DateTime | Date | Time | Duration):
        return value.iso_format()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Point):
        return {"srid": value.srid, "coordinates": list(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@contextmanager
def refused_queries() -> Iterator[None]:
    """Turn the server's refusal of a query into a :class:`CypherQueryError` with a one-line
    message; a write in a read transaction becomes a :class:`WriteQueryRefusedError`."""
    try:
        yield
    except AuthError:
        raise
    except ClientError as e:
        if e.code == ACCESS_MODE:
            raise WriteQueryRefusedError(READ_ONLY) from e
        message = (e.message or str(e)).strip().splitlines()[0]
        if e.code == PARAMETER_MISSING:
            message += " (give it with --param NAME=VALUE)"
        raise CypherQueryError(f"Neo4j refused the query: {message}") from e


def run_read_only(
    store: GraphStore, query: str, params: dict[str, Any] | None = None, limit: int = DEFAULT_LIMIT
) -> QueryRows:
    """Run ``query`` if its plan only reads, in a read transaction; its first ``limit`` rows."""
    if not query.strip():
        raise CypherQueryError("the query is empty")
    with refused_queries():
        try:
            kind = store.query_type(_EXECUTION_MODE.sub("", query, count=1), params)
        except CypherSyntaxError:
            # Parsed again as written below, so the error's line and column are the caller's;
            # a query that does not parse runs nothing.
            kind = None
        if kind not in ("r", None):
            raise WriteQueryRefusedError(f"{READ_ONLY} (its plan {PLAN_KINDS.get(kind, kind)})")
        columns, rows, truncated = store.read_query(query, params, limit)
    return QueryRows(columns, [[jsonable(v) for v in row] for row in rows], truncated)


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
    with cli_errors():
        params = dict(parse_param(p) for p in param or [])
        with open_store(Settings.from_env()) as store:
            result = run_read_only(store, query, params, limit)
    if result.truncated:
        console.print(f"only the first {limit} rows are shown (--limit)")
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return
    table = Table(*result.columns, title=f"{len(result.rows)} row(s)")
    for row in result.rows:
        table.add_row(*(_cell(v) for v in row))
    Console().print(table)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


# -- results written back for analysts ----------------------------------------------------------


@analysts_app.command("write-clusters")
def write_clusters_command(
    types: TypesOption = None,
    method: Annotated[str, typer.Option(help=f"One of {', '.join(queries.METHODS)}.")] = "kmeans",
    clusters: Annotated[int, typer.Option(min=0, help="k-means: how many clusters.")] = 0,
    min_cluster_size: Annotated[int, typer.Option(min=0, help="HDBSCAN: smallest cluster.")] = 0,
    neighbors: Annotated[int, typer.Option(min=0, help="community: kNN graph degree.")] = 0,
    space: Annotated[str, typer.Option(help="Embedding space: fused (default), text, ...")] = "",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    run: RunOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cluster the nodes of --type as the service does (mmgraph query cluster) and write the
    result back: (:Cluster {id: "<run>/<method>/<k>", run, method, cluster, size, central})
    nodes with (:Entity)-[:IN_CLUSTER]->(:Cluster), replacing that run and method's clusters."""
    settings = Settings.from_env()
    with cli_errors(), open_store(settings) as store:
        model = ActiveModel.load(load_run(settings.home, run), store)
        result = queries.cluster(
            model,
            store,
            types=types or (),
            method=method,
            clusters=clusters,
            min_cluster_size=min_cluster_size,
            neighbors=neighbors,
            space=space,
            seed=seed,
        )
        assignments = dict(zip(result.uids, result.labels.tolist(), strict=True))
        summaries = {
            s.cluster: {"central": [h.uid for h in s.central], "space": model.space(space)}
            for s in result.clusters
        }
        written = store.write_clusters(model.run_id, method, assignments, summaries)
    members = sum(label >= 0 for label in assignments.values())
    if as_json:
        payload = {"run_id": model.run_id, "method": method, "clusters": written}
        typer.echo(json.dumps(payload | {"members": members}))
    else:
        console.print(
            f"model {model.run_id}: {written} {method} clusters of {members} nodes written to Neo4j"
        )


@analysts_app.command("write-predictions")
def write_predictions_command(
    relation: Annotated[str, typer.Option(help="The relationship type to predict, e.g. HAS_TAG.")],
    types: TypesOption = None,
    uids: Annotated[list[str] | None, typer.Option("--uid", help="A source node (repeatable).")] = (
        None
    ),
    k: Annotated[int, typer.Option("--k", min=1, max=queries.MAX_K, help="Links per source.")] = 5,
    dst_type: Annotated[str, typer.Option(help="Only links to nodes of this type.")] = "",
    run: RunOption = None,
    as_json: JsonOption = False,
) -> None:
    """Predict the k most likely new RELATION links from each source node (--uid, the nodes of
    --type, or by default every node the model scores RELATION from) as the service does
    (mmgraph query predict-links) and write them back as [:PREDICTED {relation, score, model}],
    replacing that model's RELATION predictions from those sources."""
    settings = Settings.from_env()
    with cli_errors(), open_store(settings) as store:
        model = ActiveModel.load(load_run(settings.home, run), store)
        sources = _sources(model, relation, types or [], uids or [])
        links = []
        with Progress(console=console, disable=as_json) as bar:
            for uid in bar.track(sources, description=f"predict {relation}"):
                found = queries.predict_links(model, store, uid, relation, k, dst_type)
                links += [(link.src, link.dst, link.probability) for link in found]
        written = store.write_predicted_links(model.run_id, relation, links, sources)
    if as_json:
        payload = {"run_id": model.run_id, "relation": relation, "sources": len(sources)}
        typer.echo(json.dumps(payload | {"links": written}))
    else:
        console.print(
            f"model {model.run_id}: {written} predicted {relation} links from {len(sources)} "
            "nodes written to Neo4j"
        )


def _sources(model: ActiveModel, relation: str, types: list[str], uids: list[str]) -> list[str]:
    """The uids to predict from: ``uids`` and the nodes of ``types``, or, when neither is given,
    every node of a type the model scores ``relation`` links from."""
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
    return list(dict.fromkeys(picked + uids))
