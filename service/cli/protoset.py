"""``mmgraph protoset``: where the descriptor set of mmgraph's gRPC protocol is, for tools that
want one rather than ask the server's reflection (``ghz --protoset "$(mmgraph protoset)"``,
``grpcurl -protoset``)."""

from __future__ import annotations

import typer

from mmgraph.service.cli.options import JsonOption


def register(app: typer.Typer) -> None:
    """Add ``protoset`` to ``app``."""
    app.command("protoset")(protoset_command)


def protoset_command(as_json: JsonOption = False) -> None:
    """Print the path of the protocol's descriptor set (protoc --include_imports
    --descriptor_set_out, made by the build with the rest of the gRPC code)."""
    from mmgraph.service.cli.output import emit_json
    from mmgraph.service.rpc.codegen import protoset_path

    path = protoset_path()
    if as_json:
        emit_json({"path": str(path)})
    else:
        typer.echo(path)
