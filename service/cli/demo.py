"""``mmgraph demo``: the main job's last step. Serves the promoted model over real gRPC on
loopback, asks it a few typical questions (a similar emoji, a text -> emoji-image search, a
clustering summary, a link prediction), prints the answers as tables, and stops the server."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mmgraph.core.config import Settings
from mmgraph.service.cli.output import print_table


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo_command)


def demo_command(
    uid: Annotated[str, typer.Option(help="The node of the similarity and link queries.")] = (
        "emoji:1f63a"
    ),
    text: Annotated[str, typer.Option(help="The text of the cross-modal query.")] = "cat face",
    node_type: Annotated[str, typer.Option("--type", help="Node type searched.")] = "Emoji",
    relation: Annotated[str, typer.Option(help="Relation of the link prediction.")] = "HAS_TAG",
    k: Annotated[int, typer.Option(min=1, max=50, help="Answers per query.")] = 5,
) -> None:
    """Serve the promoted model on loopback, print the answers of example queries, stop."""
    from mmgraph.graph.connection import open_store
    from mmgraph.service.rpc.client import AnalyticsClient
    from mmgraph.service.rpc.server import create_server
    from mmgraph.service.serving.options import ClusterOptions
    from mmgraph.service.serving.registry import Registry

    settings = Settings.from_env()
    with open_store(settings) as store:
        store.setup_schema()
        registry = Registry(settings.home, store)
        registry.use_promoted()
        registry.require()
        server, port = create_server(settings, registry, address="127.0.0.1:0")
        try:
            with AnalyticsClient.from_settings(settings, f"127.0.0.1:{port}") as client:
                reply = client.similar(uid, k=k, types=[node_type])
                _hits(f"Similar to {uid} (fused space, run {reply.run_id})", reply.hits)
                reply = client.similar(text=text, k=k, types=[node_type], space="image")
                _hits(f"Text -> image: {text!r} among {node_type} images", reply.hits)
                options = ClusterOptions(method="kmeans", clusters=8, top=3)
                _clusters(client.cluster(types=[node_type], options=options))
                links = client.predict_links(uid, relation, k=k)
                print_table(
                    f"New {relation} for {uid}",
                    ["dst", "probability", "display"],
                    [[x.dst, x.probability, x.display] for x in links.links],
                )
        finally:
            server.stop(grace=5)


def _hits(title: str, hits: Any) -> None:
    print_table(
        title,
        ["uid", "type", "score", "display"],
        [[h.uid, h.type, h.score, h.display] for h in hits],
    )


def _clusters(reply: Any) -> None:
    rows = [
        [
            summary.cluster,
            summary.size,
            ", ".join(h.display or h.uid for h in summary.central),
            ", ".join(f"{n.display or n.uid} ({n.count})" for n in summary.neighbors[:3]),
        ]
        for summary in reply.clusters
    ]
    print_table("Clusters", ["cluster", "size", "most central", "most common neighbours"], rows)
