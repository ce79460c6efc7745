"""``mmgraph demo``: the main job's last step. Serves the promoted model over real gRPC on
loopback, asks it a few typical questions (a similar emoji, a text -> emoji-image search, a
clustering summary, a link prediction), prints the answers as tables, and stops the server."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mmgraph.core.config import Settings
from mmgraph.graph.connection import open_store
from mmgraph.service.client import AnalyticsClient
from mmgraph.service.errors import cli_errors
from mmgraph.service.registry import Registry
from mmgraph.service.server import create_server

out = Console()


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
    settings = Settings.from_env()
    with cli_errors(), open_store(settings) as store:
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
                clusters = client.cluster(types=[node_type], method="kmeans", clusters=8, top=3)
                _clusters(clusters)
                links = client.predict_links(uid, relation, k=k)
                table = Table("dst", "probability", "display", title=f"New {relation} for {uid}")
                for link in links.links:
                    table.add_row(link.dst, f"{link.probability:.3f}", link.display)
                out.print(table)
        finally:
            server.stop(grace=5)


def _hits(title: str, hits) -> None:
    table = Table("uid", "type", "score", "display", title=title)
    for hit in hits:
        table.add_row(hit.uid, hit.type, f"{hit.score:.3f}", hit.display)
    out.print(table)


def _clusters(reply) -> None:
    table = Table("cluster", "size", "most central", "most common neighbours", title="Clusters")
    for summary in reply.clusters:
        central = ", ".join(h.display or h.uid for h in summary.central)
        common = ", ".join(f"{n.display or n.uid} ({n.count})" for n in summary.neighbors[:3])
        table.add_row(str(summary.cluster), str(summary.size), central, common)
    out.print(table)
