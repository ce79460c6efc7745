"""Options several commands share, declared once (typer's ``Annotated`` style): their help is the
documentation."""

from __future__ import annotations

from typing import Annotated

import typer

from mmgraph.service.serving.options import MAX_K, METHODS, ClusterOptions

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON object for programs.")]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="HOST:PORT of the server (default MMGRAPH_GRPC_HOST:PORT)."),
]
KOption = Annotated[int, typer.Option("--k", min=1, max=MAX_K, help="How many answers.")]
SpaceOption = Annotated[
    str, typer.Option(help="Embedding space: fused (default), text, image, ...")
]
TypesOption = Annotated[
    list[str] | None, typer.Option("--type", help="Nodes of this type (repeatable).")
]
RunOption = Annotated[
    str | None, typer.Option("--run", help="The model run (default: the promoted one).")
]
MethodOption = Annotated[str, typer.Option(help=f"One of {', '.join(METHODS)}.")]
ClustersOption = Annotated[int, typer.Option(min=0, help="k-means: how many clusters.")]
MinClusterOption = Annotated[int, typer.Option(min=0, help="HDBSCAN: smallest cluster.")]
NeighborsOption = Annotated[int, typer.Option(min=0, help="community: kNN graph degree.")]
SeedOption = Annotated[int, typer.Option(help="Random seed.")]
ExplainOption = Annotated[
    bool, typer.Option("--explain", help="Say why: shared neighbours, peers, modality weights.")
]


def cluster_options(
    method: str,
    clusters: int,
    min_cluster_size: int,
    neighbors: int,
    space: str,
    seed: int,
    top: int = 0,
) -> ClusterOptions:
    """The :class:`ClusterOptions` of a command's options (an unknown method exits 2)."""
    if method not in METHODS:
        raise typer.BadParameter(f"--method must be one of {list(METHODS)}")
    return ClusterOptions(
        method=method,
        clusters=clusters,
        min_cluster_size=min_cluster_size,
        neighbors=neighbors,
        space=space,
        top=top,
        seed=seed,
    )
