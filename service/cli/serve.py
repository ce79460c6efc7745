"""``mmgraph serve``: run the gRPC server until SIGTERM or Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from mmgraph.core.config import Settings


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve_command)


def serve_command(
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port to listen on (default MMGRAPH_GRPC_PORT)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes sharing the port, each loading the promoted model (one per "
            "core for uid queries at high rates; clients need a connection per process).",
        ),
    ] = 1,
) -> None:
    """Serve similarity, clustering, link prediction and ingest over gRPC, from the promoted
    model; stops gracefully (calls in flight finish) on SIGTERM or Ctrl-C.

    Host, token, TLS and message limits come from the environment (MMGRAPH_GRPC_HOST,
    MMGRAPH_TOKEN, MMGRAPH_TLS_CERT / MMGRAPH_TLS_KEY, MMGRAPH_MAX_MESSAGE_BYTES). With several
    workers, UseModel must promote (so that every process switches).
    """
    settings = Settings.from_env()
    if workers > 1:
        from mmgraph.service.rpc.workers import serve_processes

        serve_processes(settings, port, workers)
    else:
        from mmgraph.service.rpc.server import serve

        serve(settings, port)
