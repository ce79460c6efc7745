"""The ``mmgraph`` CLI's fixed JSON shapes and exit codes, on the real local Neo4j."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mmgraph.core.config import Settings
from mmgraph.graph.store import GraphStore, NodeRow
from mmgraph.service.cli import app

runner = CliRunner()


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_ingest_and_stats_print_their_fixed_json_shapes(
    env: Settings, store: GraphStore, tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "g.jsonl",
        [
            {"uid": "p:1", "type": "Product", "text": "red mug", "numbers": {"price": 3.5}},
            {"uid": "p:2", "type": "Product", "numbers": {"price": 5.0}},
            {"uid": "t:mug", "type": "Tag"},
            {"src": "p:1", "dst": "t:mug", "type": "HAS_TAG"},
        ],
    )
    result = runner.invoke(app, ["ingest", str(path), "--json", "--no-text"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {
        "run_id",
        "status",
        "nodes_written",
        "relationships_written",
        "quarantined",
        "warnings",
        "quarantine_file",
    }
    assert report["status"] == "ok" and report["quarantine_file"] is None
    assert (report["nodes_written"], report["relationships_written"]) == (3, 1)

    stats = runner.invoke(app, ["stats", "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout) == {
        "nodes": {"Product": 2, "Tag": 1},
        "relationships": {"HAS_TAG": 1},
    }
    node = store.get_node("p:1")
    assert node is not None and node.vectors["num"][0].shape == (1,)


def test_partial_ingest_exits_3_and_names_its_quarantine_file(
    env: Settings, store: GraphStore, tmp_path: Path
) -> None:
    path = _write(tmp_path / "bad.jsonl", [{"uid": "p:1", "type": "Product"}, {"type": "X"}])
    result = runner.invoke(app, ["ingest", str(path), "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert (report["status"], report["quarantined"]) == ("partial", 1)
    assert Path(report["quarantine_file"]).parent == env.home / "quarantine"


def test_user_errors_print_one_line_and_exit_with_their_kind(env: Settings, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "nope.xml")])
    assert result.exit_code == 2  # invalid argument
    assert "unsupported file type" in result.output
    assert "Traceback" not in result.output
    as_json = runner.invoke(app, ["ingest", str(tmp_path / "missing.jsonl"), "--json"])
    assert as_json.exit_code == 4  # not found
    assert json.loads(as_json.stdout) == {
        "run_id": None,
        "status": "failed",
        "nodes_written": 0,
        "relationships_written": 0,
        "quarantined": 0,
        "warnings": 0,
        "quarantine_file": None,
    }
    assert runner.invoke(app, ["ingest", "--dataset", "nope"]).exit_code == 4


def test_ingest_from_dir_takes_each_file_once(
    env: Settings, store: GraphStore, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    _write(drop / "a.jsonl", [{"uid": "p:1", "type": "Product"}])
    first = runner.invoke(app, ["ingest", "--from-dir", str(drop), "--json", "--no-text"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert [f["outcome"] for f in report["files"]] == ["ingested"]
    assert (drop / "done" / "a.jsonl").exists()
    _write(drop / "a.jsonl", [{"uid": "p:1", "type": "Product"}])
    _write(drop / "b.jsonl", [{"uid": "p:2", "type": "Product"}])
    second = json.loads(runner.invoke(app, ["ingest", "--from-dir", str(drop), "--json"]).stdout)
    outcomes = {Path(f["file"]).name: f["outcome"] for f in second["files"]}
    assert outcomes == {"a.jsonl": "skipped", "b.jsonl": "ingested"}
    assert store.counts().nodes == {"Product": 2}
    assert runner.invoke(app, ["ingest", "--from-dir", str(drop), "x.jsonl"]).exit_code == 2


def test_bulk_on_a_server_named_by_neo4j_uri_is_refused_and_changes_nothing(
    env: Settings, store: GraphStore, tmp_path: Path
) -> None:
    store.write_batch([NodeRow("p:0", "Product")], [], "earlier")
    path = _write(tmp_path / "g.jsonl", [{"uid": "p:1", "type": "Product"}])
    result = runner.invoke(app, ["ingest", str(path), "--bulk", "--json"])
    assert result.exit_code == 5, result.output  # failed precondition
    assert "--bulk loads only the local Neo4j" in result.output
    assert "Traceback" not in result.output
    assert json.loads(result.stdout)["run_id"] is None
    assert store.counts().nodes == {"Product": 1}
    # Unasked, a run on such a server is transactional.
    default = runner.invoke(app, ["ingest", str(path), "--json", "--no-text"])
    assert default.exit_code == 0, default.output
    assert store.counts().nodes == {"Product": 2}
