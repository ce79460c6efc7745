"""``mmgraph``: the command line for people (and scripts: every report has ``--json``).

Each command parses its options, calls one workflow (:mod:`mmgraph.service.workflows`) or the
gRPC client, and formats what comes back. Commands import what they run (torch, PyG, the
encoders) only when they run, so ``mmgraph --help`` and ``mmgraph query ...`` start at once. Every
command runs inside one error boundary (:class:`~.boundary.BoundaryGroup`).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from mmgraph.service.cli import (
    analysts,
    demo,
    freshness,
    graph,
    ingest,
    models,
    protoset,
    query,
    serve,
)
from mmgraph.service.cli.boundary import BoundaryGroup

app = typer.Typer(
    help=__doc__.split("\n\n")[0],
    cls=BoundaryGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    """mmgraph: multimodal items and their relations as a graph in Neo4j."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for module in (graph, ingest, models, freshness, analysts, query, serve, protoset, demo):
    module.register(app)

__all__ = ["app"]
