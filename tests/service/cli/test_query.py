"""``mmgraph query ...`` against a real server: fixed JSON shapes and exit codes."""

from __future__ import annotations

import json

import pytest
import typer
from model_runs import save_run
from typer.testing import CliRunner

from mmgraph.core.config import Settings
from mmgraph.graph.store import GraphStore
from mmgraph.service.cli import app as mmgraph
from mmgraph.service.serving.registry import Registry

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    return mmgraph


@pytest.fixture
def target(home: Settings, graph: GraphStore, serve) -> str:
    save_run(home.home, "r1", seed=1, created="2026-11-25T10:00:00Z")
    registry = Registry(home.home, graph)
    registry.use("r1")
    server, _ = serve(home, registry)
    return f"127.0.0.1:{server.port}"


def _json(app: typer.Typer, *args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_query_commands_print_fixed_json(app: typer.Typer, target: str) -> None:
    similar = _json(app, "query", "similar", "e:grin", "--k", "2", "--server", target)
    assert list(similar) == ["results"] and len(similar["results"]) == 2
    assert all(set(r) == {"uid", "type", "score"} for r in similar["results"])
    clusters = _json(
        app, "query", "cluster", "--type", "Emoji", "--clusters", "2", "--server", target
    )
    assert len(clusters["assignments"]) == 6 and len(clusters["clusters"]) == 2
    links = _json(
        app, "query", "predict-links", "e:grin", "--relation", "HAS_TAG", "--server", target
    )
    assert [r["dst"] for r in links["results"]] == ["t:animal"]
    scored = _json(
        app,
        "query",
        "score-links",
        "--relation",
        "HAS_TAG",
        "e:grin",
        "t:face",
        "--server",
        target,
    )
    assert [(r["src"], r["dst"]) for r in scored["results"]] == [("e:grin", "t:face")]


def test_query_errors_exit_with_their_status_code(app: typer.Typer, target: str) -> None:
    missing = runner.invoke(app, ["query", "similar", "e:nope", "--server", target, "--json"])
    assert missing.exit_code == 4 and "NOT_FOUND" in missing.output
    bad = runner.invoke(app, ["query", "similar", "e:grin", "--space", "x", "--server", target])
    assert bad.exit_code == 2 and "INVALID_ARGUMENT" in bad.output
    down = runner.invoke(app, ["query", "similar", "e:grin", "--server", "127.0.0.1:1"])
    assert down.exit_code == 75 and "UNAVAILABLE" in down.output


def test_explain_adds_why_to_each_answer(app: typer.Typer, target: str) -> None:
    similar = _json(
        app,
        "query",
        "similar",
        "e:grin",
        "--k",
        "1",
        "--type",
        "Emoji",
        "--explain",
        "--server",
        target,
    )
    (hit,) = similar["results"]
    assert hit["uid"] == "e:smile"
    assert hit["explanation"]["shared"] == [{"relation": "HAS_TAG", "count": 1, "uids": ["t:face"]}]
    links = _json(
        app,
        "query",
        "predict-links",
        "e:grin",
        "--relation",
        "HAS_TAG",
        "--explain",
        "--server",
        target,
    )
    assert set(links["results"][0]["explanation"]) == {
        "shared",
        "query_modality_weights",
        "hit_modality_weights",
        "peers",
    }
    args = ["query", "similar", "e:grin", "--k", "1", "--type", "Emoji", "--explain"]
    table = runner.invoke(app, [*args, "--server", target])
    assert table.exit_code == 0 and "HAS_TAG: 1 shared (t:face)" in table.output
