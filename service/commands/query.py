"""``mmgraph query ...``: ask a running server (``mmgraph serve``) for similar nodes, clusters and
links. A failed call prints the server's message and exits with the code of its status
(:data:`mmgraph.service.errors.EXIT_CODES`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.console import Console
from rich.table import Table

from mmgraph.core.config import Settings
from mmgraph.service.client import CLUSTER_METHODS, AnalyticsClient
from mmgraph.service.errors import exit_code_for

console = Console(stderr=True)
query_app = typer.Typer(help="Ask a running mmgraph server (mmgraph serve).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON object for programs.")]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="HOST:PORT of the server (default MMGRAPH_GRPC_HOST:PORT)."),
]
KOption = Annotated[int, typer.Option("--k", min=1, max=1000, help="How many answers.")]
SpaceOption = Annotated[
    str, typer.Option(help="Embedding space: fused (default), text, image, ...")
]
TypesOption = Annotated[
    list[str] | None, typer.Option("--type", help="Only nodes of this type (repeatable).")
]


def register(app: typer.Typer) -> None:
    """Add the ``query`` command group to ``app``."""
    app.add_typer(query_app, name="query")


@contextmanager
def _client(server: str | None) -> Iterator[AnalyticsClient]:
    """A client of the server; a failed call becomes one printed line and its exit code."""
    client = AnalyticsClient.from_settings(Settings.from_env(), server)
    try:
        yield client
    except grpc.RpcError as e:
        console.print(f"[red]error:[/red] {e.code().name}: {e.details()}")
        raise typer.Exit(exit_code_for(e)) from e
    finally:
        client.close()


def _emit(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, indent=2))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    Console().print(table)


@query_app.command("similar")
def similar(
    uid: Annotated[str | None, typer.Argument(help="Search from this node.")] = None,
    text: Annotated[str | None, typer.Option(help="Search from this text.")] = None,
    image: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Search from this image.")
    ] = None,
    types: TypesOption = None,
    space: SpaceOption = "",
    k: KOption = 10,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """The k nodes nearest to a node, a text or an image (give one). ``--text "..." --type Emoji
    --space image`` finds emoji whose pictures match the words."""
    if sum(x is not None for x in (uid, text, image)) != 1:
        raise typer.BadParameter("give one of UID, --text or --image")
    with _client(server) as client:
        reply = client.similar(
            uid,
            text=text,
            image=image.read_bytes() if image else None,
            k=k,
            types=types or (),
            space=space,
        )
    if as_json:
        _emit({"results": [{"uid": h.uid, "type": h.type, "score": h.score} for h in reply.hits]})
        return
    _table(
        f"similar ({reply.space}, model {reply.run_id})",
        ["uid", "type", "score", "text"],
        [[h.uid, h.type, h.score, h.display] for h in reply.hits],
    )


@query_app.command("cluster")
def cluster(
    types: TypesOption = None,
    uids: Annotated[list[str] | None, typer.Option("--uid", help="A node (repeatable).")] = None,
    method: Annotated[str, typer.Option(help=f"One of {', '.join(CLUSTER_METHODS)}.")] = "kmeans",
    clusters: Annotated[int, typer.Option(min=0, help="k-means: how many clusters.")] = 0,
    min_cluster_size: Annotated[int, typer.Option(min=0, help="HDBSCAN: smallest cluster.")] = 0,
    neighbors: Annotated[int, typer.Option(min=0, help="community: kNN graph degree.")] = 0,
    space: SpaceOption = "",
    top: Annotated[int, typer.Option(min=0, help="Members and neighbours per summary.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cluster nodes (by --type and/or --uid) and summarise each cluster."""
    if method not in CLUSTER_METHODS:
        raise typer.BadParameter(f"--method must be one of {list(CLUSTER_METHODS)}")
    with _client(server) as client:
        reply = client.cluster(
            types=types or (),
            uids=uids or (),
            method=method,
            clusters=clusters,
            min_cluster_size=min_cluster_size,
            neighbors=neighbors,
            space=space,
            top=top,
            seed=seed,
        )
    summaries = [
        {
            "cluster": c.cluster,
            "size": c.size,
            "central": [{"uid": h.uid, "type": h.type, "score": h.score} for h in c.central],
            "neighbors": [
                {"relation": n.relation, "uid": n.uid, "type": n.type, "count": n.count}
                for n in c.neighbors
            ],
        }
        for c in reply.clusters
    ]
    if as_json:
        _emit(
            {
                "method": reply.method,
                "assignments": [
                    {"uid": a.uid, "type": a.type, "cluster": a.cluster} for a in reply.assignments
                ],
                "clusters": summaries,
            }
        )
        return
    _table(
        f"{reply.method} clusters (model {reply.run_id})",
        ["cluster", "size", "central members", "common neighbours"],
        [
            [
                c.cluster,
                c.size,
                ", ".join(h.display or h.uid for h in c.central),
                ", ".join(f"{n.relation}:{n.display or n.uid} ({n.count})" for n in c.neighbors),
            ]
            for c in reply.clusters
        ],
    )


@query_app.command("predict-links")
def predict_links(
    uid: Annotated[str, typer.Argument(help="The source node.")],
    relation: Annotated[str, typer.Option(help="Relationship type, e.g. HAS_TAG.")],
    dst_type: Annotated[str, typer.Option(help="Only targets of this type.")] = "",
    k: KOption = 10,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """The k most likely new links of a relation type from a node (existing ones excluded)."""
    with _client(server) as client:
        reply = client.predict_links(uid, relation, k=k, dst_type=dst_type)
    rows = [
        {"src": x.src, "dst": x.dst, "type": x.dst_type, "probability": x.probability}
        for x in reply.links
    ]
    if as_json:
        _emit({"results": rows})
        return
    _table(
        f"{relation} links from {uid} (model {reply.run_id})",
        ["dst", "type", "probability", "text"],
        [[x.dst, x.dst_type, x.probability, x.display] for x in reply.links],
    )


@query_app.command("score-links")
def score_links(
    uids: Annotated[list[str], typer.Argument(help="The links to score: SRC DST [SRC DST ...].")],
    relation: Annotated[str, typer.Option(help="Relationship type, e.g. HAS_TAG.")],
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """The probability of each given link."""
    if len(uids) % 2:
        raise typer.BadParameter("give the links as pairs: SRC DST [SRC DST ...]")
    pairs = list(zip(uids[::2], uids[1::2], strict=True))
    with _client(server) as client:
        probs = client.score_links(relation, pairs)
    rows = [{"src": s, "dst": d, "probability": p} for (s, d), p in zip(pairs, probs, strict=True)]
    if as_json:
        _emit({"results": rows})
        return
    _table(f"{relation} links", ["src", "dst", "probability"], [list(r.values()) for r in rows])
