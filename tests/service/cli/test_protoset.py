"""``mmgraph protoset`` names a descriptor set that describes the protocol as the server's code
does (what ghz --protoset and grpcurl -protoset read)."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import descriptor_pb2
from typer.testing import CliRunner

from mmgraph.service.cli import app
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb

runner = CliRunner()


def _without_json_names(messages) -> None:
    """Clear the JSON names protoc adds to a descriptor set (generated code leaves them out)."""
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _without_json_names(message.nested_type)


def test_protoset_describes_the_protocol() -> None:
    result = runner.invoke(app, ["protoset"])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    files = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file}
    generated = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(generated)
    _without_json_names(files["mmgraph/v1/analytics.proto"].message_type)
    assert files["mmgraph/v1/analytics.proto"] == generated
    (service,) = files["mmgraph/v1/analytics.proto"].service
    assert service.name == "Analytics" and "Similar" in {m.name for m in service.method}
    as_json = runner.invoke(app, ["protoset", "--json"])
    assert json.loads(as_json.output) == {"path": str(path)}
