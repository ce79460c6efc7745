"""``mmgraph query ...``: ask a running server (``mmgraph serve``) for similar nodes, clusters and
links. A failed call prints the server's message and exits with the code of its status
(:data:`mmgraph.service.errors.EXIT_CODES`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mmgraph.core.config import Settings
from mmgraph.service.cli.options import (
    ClustersOption,
    ExplainOption,
    JsonOption,
    KOption,
    MethodOption,
    MinClusterOption,
    NeighborsOption,
    SeedOption,
    ServerOption,
    SpaceOption,
    TypesOption,
    cluster_options,
)
from mmgraph.service.cli.output import emit_json, errors, print_table

if TYPE_CHECKING:
    from mmgraph.service.rpc.client import AnalyticsClient

query_app = typer.Typer(help="Ask a running mmgraph server (mmgraph serve).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``query`` command group to ``app``."""
    app.add_typer(query_app, name="query")


@contextmanager
def _client(server: str | None) -> Iterator[AnalyticsClient]:
    """A client of the server; a failed call raises its status's error kind (printed and exited
    with by the CLI's boundary)."""
    import grpc

    from mmgraph.service.rpc.client import AnalyticsClient
    from mmgraph.service.rpc.status import remote_error

    client = AnalyticsClient.from_settings(Settings.from_env(), server)
    try:
        yield client
    except grpc.RpcError as e:
        raise remote_error(e) from e
    finally:
        client.close()


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
    explain: ExplainOption = False,
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
            explain=explain,
        )
    if as_json:
        results = [
            {"uid": h.uid, "type": h.type, "score": h.score} | _explanation(h, explain)
            for h in reply.hits
        ]
        emit_json({"results": results})
        return
    print_table(
        f"similar ({reply.space}, model {reply.run_id})",
        ["uid", "type", "score", "text"],
        [[h.uid, h.type, h.score, h.display] for h in reply.hits],
        digits=4,
    )
    if explain:
        _print_explanations((h.uid, h.explanation) for h in reply.hits)


@query_app.command("cluster")
def cluster(
    types: TypesOption = None,
    uids: Annotated[list[str] | None, typer.Option("--uid", help="A node (repeatable).")] = None,
    method: MethodOption = "kmeans",
    clusters: ClustersOption = 0,
    min_cluster_size: MinClusterOption = 0,
    neighbors: NeighborsOption = 0,
    space: SpaceOption = "",
    top: Annotated[int, typer.Option(min=0, help="Members and neighbours per summary.")] = 0,
    seed: SeedOption = 0,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cluster nodes (by --type and/or --uid) and summarise each cluster."""
    options = cluster_options(method, clusters, min_cluster_size, neighbors, space, seed, top)
    with _client(server) as client:
        reply = client.cluster(types=types or (), uids=uids or (), options=options)
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
        emit_json(
            {
                "method": reply.method,
                "assignments": [
                    {"uid": a.uid, "type": a.type, "cluster": a.cluster} for a in reply.assignments
                ],
                "clusters": summaries,
            }
        )
        return
    print_table(
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
        digits=4,
    )


@query_app.command("predict-links")
def predict_links(
    uid: Annotated[str, typer.Argument(help="The source node.")],
    relation: Annotated[str, typer.Option(help="Relationship type, e.g. HAS_TAG.")],
    dst_type: Annotated[str, typer.Option(help="Only targets of this type.")] = "",
    k: KOption = 10,
    explain: ExplainOption = False,
    server: ServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """The k most likely new links of a relation type from a node (existing ones excluded)."""
    with _client(server) as client:
        reply = client.predict_links(uid, relation, k=k, dst_type=dst_type, explain=explain)
    rows = [
        {"src": x.src, "dst": x.dst, "type": x.dst_type, "probability": x.probability}
        | _explanation(x, explain)
        for x in reply.links
    ]
    if as_json:
        emit_json({"results": rows})
        return
    print_table(
        f"{relation} links from {uid} (model {reply.run_id})",
        ["dst", "type", "probability", "text"],
        [[x.dst, x.dst_type, x.probability, x.display] for x in reply.links],
        digits=4,
    )
    if explain:
        _print_explanations((x.dst, x.explanation) for x in reply.links)


def _explanation(answer: Any, explain: bool) -> dict[str, Any]:
    """``{"explanation": {...}}`` of a hit or link message when asked, else ``{}``."""
    if not explain:
        return {}
    why = answer.explanation
    return {
        "explanation": {
            "shared": [
                {"relation": s.relation, "count": s.count, "uids": list(s.uids)} for s in why.shared
            ],
            "query_modality_weights": dict(why.query_modality_weights),
            "hit_modality_weights": dict(why.hit_modality_weights),
            "peers": [{"uid": p.uid, "shared": p.shared} for p in why.peers],
        }
    }


def _print_explanations(answers: Iterable[tuple[str, Any]]) -> None:
    """One line per answer: what it shares with the query, its peers, the modality weights."""
    console = errors()
    for uid, why in answers:
        parts = [f"{s.relation}: {s.count} shared ({', '.join(s.uids[:3])})" for s in why.shared]
        if why.peers:
            parts.append("peers " + ", ".join(f"{p.uid} ({p.shared})" for p in why.peers))
        if why.hit_modality_weights:
            weights = ", ".join(f"{m} {w:.2f}" for m, w in why.hit_modality_weights.items())
            parts.append(f"modality weights {weights}")
        console.print(f"{uid}: {'; '.join(parts) or 'nothing shared in the graph'}")


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
        emit_json({"results": rows})
        return
    print_table(
        f"{relation} links",
        ["src", "dst", "probability"],
        [list(r.values()) for r in rows],
        digits=4,
    )
