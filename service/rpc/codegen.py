"""Generate the Python gRPC code of ``protos/`` into ``service/rpc/proto/`` (``python -m
mmgraph.service.rpc.codegen``), with the protocol's descriptor set (``mmgraph.protoset``: protoc's
``--include_imports --descriptor_set_out``, for tools that want one rather than ask the server's
reflection: ``ghz --protoset``, ``grpcurl -protoset``), and tell whether what is there is older
than the protos.

protoc writes ``from mmgraph.v1 import ...`` for one proto importing another (and in the
``*_pb2_grpc.py`` stubs); those imports are rewritten to the installed package
``mmgraph.service.rpc.proto.mmgraph.v1``. A marker file beside the generated code keeps the
SHA-256 of every proto it was made from: :func:`stale_protos` compares those, never file times
(a checkout sets times at random).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from importlib.metadata import version as package_version
from pathlib import Path

from mmgraph.core.errors import FailedPreconditionError

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "protos"
OUT_DIR = Path(__file__).resolve().parent / "proto"
PACKAGE = "mmgraph.service.rpc.proto"
MARKER = "GENERATED.json"
PROTOSET = "mmgraph.protoset"
_IMPORT = re.compile(r"^(from|import) mmgraph\.v1\b", re.MULTILINE)


class CodegenError(RuntimeError):
    """protoc failed, or there are no protos to generate from."""


class ProtosetMissingError(FailedPreconditionError):
    """The descriptor set was never generated (the build runs the code generation)."""


def proto_files(proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Every ``.proto`` under ``proto_dir``, sorted."""
    return sorted(proto_dir.rglob("*.proto"))


def proto_hashes(proto_dir: Path = PROTO_DIR) -> dict[str, str]:
    """The SHA-256 of each proto, by its path relative to ``proto_dir``."""
    return {
        p.relative_to(proto_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in proto_files(proto_dir)
    }


def generate(proto_dir: Path = PROTO_DIR, out_dir: Path = OUT_DIR) -> list[Path]:
    """Run ``grpc_tools.protoc`` on every proto; return the files written into ``out_dir``.

    Output is written to a temporary folder first and moved into place file by file, the marker
    last, so a failed run never leaves a marker claiming fresh code.
    """
    from grpc_tools import protoc

    protos = proto_files(proto_dir)
    if not protos:
        raise CodegenError(f"no .proto files under {proto_dir}")
    include = Path(protoc.__file__).parent / "_proto"
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            "--include_imports",
            f"--descriptor_set_out={Path(tmp) / PROTOSET}",
            *(str(p) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise CodegenError(f"protoc failed on {[str(p) for p in protos]}")
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_dir():
                continue
            target = out_dir / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.name == PROTOSET:
                target.write_bytes(path.read_bytes())
            else:
                text = _IMPORT.sub(lambda m: f"{m.group(1)} {PACKAGE}.mmgraph.v1", path.read_text())
                target.write_text(text)
            written.append(target)
    marker = {"protos": proto_hashes(proto_dir), "grpcio_tools": package_version("grpcio-tools")}
    tmp_marker = out_dir / f".{MARKER}.tmp"
    tmp_marker.write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_marker, out_dir / MARKER)
    return written


def protoset_path(out_dir: Path = OUT_DIR) -> Path:
    """Where the descriptor set is; raise :class:`ProtosetMissingError` if it was not made."""
    path = out_dir / PROTOSET
    if not path.is_file():
        raise ProtosetMissingError(
            f"no descriptor set at {path}: generate it (make venv, or python -m "
            "mmgraph.service.rpc.codegen)"
        )
    return path


def stale_protos(proto_dir: Path = PROTO_DIR, out_dir: Path = OUT_DIR) -> list[str]:
    """The protos whose generated code is missing or older than the proto itself (by hash)."""
    marker = out_dir / MARKER
    made = json.loads(marker.read_text())["protos"] if marker.exists() else {}
    return [name for name, digest in proto_hashes(proto_dir).items() if made.get(name) != digest]


def main() -> int:
    """Generate the code; print what was written."""
    for path in generate():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
