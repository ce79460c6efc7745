"""One table, both doors: every error kind gives the same exit code from every command that can
raise it and the same gRPC status from every method; a bug is exit 70 / ``INTERNAL``.

The kinds are planted where each door hands over to the code below it (the workflow a command
calls, the registry or workflow a method calls): that is the only way to raise every kind from
every entry point. The real failures (an unreachable database or server, a wrong token, a missing
file) are checked beside them, unplanted."""

from __future__ import annotations

import importlib
import socket
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from model_runs import save_run
from typer.testing import CliRunner

from mmgraph.core.config import Settings
from mmgraph.core.errors import ERROR_KINDS, INTERNAL, ErrorKind
from mmgraph.graph.store import GraphStore
from mmgraph.service.cli import app
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.serving.registry import Registry

runner = CliRunner()
BUG = INTERNAL  # planted as a KeyError: of no kind

# Each command, and the workflow function (module, name) it hands its work to.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("stats",): ("mmgraph.service.workflows.graph", "counts"),
    ("runs",): ("mmgraph.service.workflows.graph", "ingest_runs"),
    ("neo4j", "start"): ("mmgraph.service.workflows.graph", "start_local"),
    ("datasets", "fetch", "emoji"): ("mmgraph.service.workflows.graph", "fetch_dataset"),
    ("ingest", "a.jsonl"): ("mmgraph.service.workflows.ingest", "ingest_paths"),
    ("ingest", "--dataset", "emoji"): ("mmgraph.service.workflows.ingest", "ingest_dataset"),
    ("train", "--model", "early"): ("mmgraph.service.workflows.training", "train"),
    ("evaluate", "--all"): ("mmgraph.service.workflows.training", "evaluate"),
    ("models", "promote", "r1"): ("mmgraph.service.workflows.promotion", "promote"),
    ("refresh",): ("mmgraph.service.workflows.freshness", "refresh"),
    ("retrain-if-stale",): ("mmgraph.service.workflows.freshness", "retrain"),
    ("cypher", "RETURN 1"): ("mmgraph.service.workflows.analysts", "read_only_query"),
    ("analysts", "write-clusters", "--type", "Emoji"): (
        "mmgraph.service.workflows.analysts",
        "write_clusters",
    ),
    ("analysts", "write-predictions", "--relation", "HAS_TAG"): (
        "mmgraph.service.workflows.analysts",
        "write_predictions",
    ),
    ("serve",): ("mmgraph.service.rpc.server", "serve"),
}


def _raiser(kind: ErrorKind) -> Callable[..., None]:
    def raise_it(*args: object, **kwargs: object) -> None:
        if kind is BUG:
            raise KeyError("planted bug")
        raise kind.error(f"planted {kind.status}")

    return raise_it


@pytest.mark.parametrize("kind", [*ERROR_KINDS, BUG], ids=lambda k: k.status)
def test_a_kind_exits_with_its_code_from_every_command(
    kind: ErrorKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    for args, (module, name) in COMMANDS.items():
        monkeypatch.setattr(importlib.import_module(module), name, _raiser(kind))
        result = runner.invoke(app, list(args))
        assert result.exit_code == kind.exit_code, (args, result.output)
        if kind is BUG:
            assert "Traceback" in result.output and "KeyError: 'planted bug'" in result.output
        else:
            assert f"error: planted {kind.status}" in result.output
            assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", [*ERROR_KINDS, BUG], ids=lambda k: k.status)
def test_a_kind_answers_with_its_status_from_every_method(
    kind: ErrorKind,
    home: Settings,
    graph: GraphStore,
    serve: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(home.home, graph)
    for method in ("require", "runs", "use"):
        monkeypatch.setattr(registry, method, _raiser(kind))
    monkeypatch.setattr(
        importlib.import_module("mmgraph.service.rpc.servicer"), "ingest_stream", _raiser(kind)
    )
    _, client = serve(home, registry)
    calls = {
        "Similar": lambda: client.similar("e:grin"),
        "Cluster": lambda: client.cluster(types=["Emoji"]),
        "PredictLinks": lambda: client.predict_links("e:grin", "HAS_TAG"),
        "ScoreLinks": lambda: client.score_links("HAS_TAG", [("e:grin", "t:face")]),
        "Ingest": lambda: client.ingest([pb.IngestRecord(item=pb.Item(uid="x:1", type="X"))]),
        "ListModels": client.list_models,
        "UseModel": lambda: client.use_model("r1"),
    }
    for name, call in calls.items():
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code().name == kind.status, name
        if kind is BUG:
            assert info.value.details() == "internal error", name
        else:
            assert info.value.details() == f"planted {kind.status}", name


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_real_failures_exit_with_their_kinds_code(
    env: Settings,
    home: Settings,
    graph: GraphStore,
    serve: Callable,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MMGRAPH_HOME", str(tmp_path / "empty"))  # no model runs
    missing = runner.invoke(app, ["ingest", str(tmp_path / "missing.jsonl")])
    assert missing.exit_code == 4, missing.output
    bad_type = runner.invoke(app, ["ingest", str(tmp_path / "a.xml")])
    assert bad_type.exit_code == 2, bad_type.output
    no_model = runner.invoke(app, ["refresh"])  # nothing promoted under this home
    assert no_model.exit_code == 5, no_model.output

    save_run(home.home, "r1", seed=1, created="2026-11-25T10:00:00Z")
    registry = Registry(home.home, graph)
    registry.use("r1")
    secured = home.model_copy(update={"token": "s3cret"})
    server, _ = serve(secured, registry)
    target = f"127.0.0.1:{server.port}"
    monkeypatch.setenv("MMGRAPH_TOKEN", "wrong")
    wrong = runner.invoke(app, ["query", "similar", "e:grin", "--server", target])
    assert wrong.exit_code == 7 and "UNAUTHENTICATED" in wrong.output, wrong.output
    monkeypatch.setenv("MMGRAPH_TOKEN", "s3cret")
    assert runner.invoke(app, ["query", "similar", "e:grin", "--server", target]).exit_code == 0
    gone = runner.invoke(app, ["query", "similar", "e:grin", "--server", "127.0.0.1:1"])
    assert gone.exit_code == 75 and "UNAVAILABLE" in gone.output, gone.output

    monkeypatch.setenv("NEO4J_URI", f"bolt://127.0.0.1:{_closed_port()}")
    down = runner.invoke(app, ["stats"])
    assert down.exit_code == 75 and "unavailable" in down.output, down.output
