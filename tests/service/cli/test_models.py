"""``mmgraph train``, ``models list`` and ``models promote`` on the real local Neo4j: a promoted
run's embeddings answer Neo4j's own vector index in Cypher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmgraph.core.config import Settings
from mmgraph.gnn.names import MODEL_NAMES
from mmgraph.graph.store import GraphStore, NodeRow, RelRow
from mmgraph.service.cli import app

runner = CliRunner()


def _graph(store: GraphStore) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8)).astype(np.float32)
    items = [
        NodeRow(
            f"i:{i}",
            "Item",
            {"text": f"item {i}"},
            {"text": (centres[i % 2] + 0.3 * rng.normal(size=8).astype(np.float32), "t@1")},
        )
        for i in range(30)
    ]
    tags = [NodeRow(f"t:{j}", "Tag", {}, {"text": (centres[j % 2], "t@1")}) for j in range(6)]
    rels = [
        RelRow(f"i:{i}", f"t:{(i % 2) + 2 * k}", "HAS_TAG") for i in range(30) for k in range(3)
    ]
    store.write_batch(items + tags, rels, "test")


def test_train_promote_and_query_the_vector_index_in_cypher(
    env: Settings, store: GraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMGRAPH_HOME", str(tmp_path))  # only this test's runs
    _graph(store)
    # Two ranks train it together (gloo); rank 0 saves the one run.
    args = ["train", "--model", "early", "--epochs", "3", "--nproc", "2", "--json"]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    run = json.loads(trained.stdout)
    assert run["model"] == "early" and run["metrics"]["mrr"] > 0

    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert [r["run_id"] for r in listed["runs"]] == [run["run_id"]]
    assert listed["runs"][0]["active"] is False

    promoted = runner.invoke(app, ["models", "promote", run["run_id"], "--json"])
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["embeddings_written"] == 36

    with store.session() as session:
        model = session.run("MATCH (m:Model {active: true}) RETURN m.id AS id").single()
        assert model["id"] == run["run_id"]
        vector = session.run("MATCH (n:Entity {uid: 'i:0'}) RETURN n.emb AS v").single()["v"]
        hits = session.run(
            "CALL db.index.vector.queryNodes('entity_emb', 5, $v) YIELD node, score "
            "RETURN node.uid AS uid, score",
            v=vector,
        ).data()
    assert hits[0]["uid"] == "i:0" and hits[0]["score"] > 0.99
    assert len(hits) == 5
    assert json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)["runs"][0]["active"]


def test_train_refuses_fewer_than_one_rank(env: Settings) -> None:
    result = runner.invoke(app, ["train", "--nproc", "0"])
    assert result.exit_code == 2 and "nproc" in result.output


def test_promoting_an_unknown_run_is_not_found(env: Settings) -> None:
    result = runner.invoke(app, ["models", "promote", "nope"])
    assert result.exit_code == 4
    assert "no model run 'nope'" in result.output


def test_evaluate_prints_one_table_and_writes_the_report(
    env: Settings, store: GraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMGRAPH_HOME", str(tmp_path / "home"))
    _graph(store)
    report = tmp_path / "report"
    args = ["evaluate", "--model", "early", "--model", "late", "--epochs", "2", "--json"]
    result = runner.invoke(app, [*args, "--report", str(report)])
    # The session's Neo4j has no GDS: the FastRP row is left out with a warning, not an error.
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    # The trained models, then the raw-feature anchor row (no FastRP: no GDS here).
    assert set(table) == {"split", "models"}
    assert list(table["models"]) == ["early", "late", "features"]
    keys = {"mrr", "hits@1", "hits@3", "hits@10", "auc", "nmi", "ari", "recall@1", "recall@10"}
    keys |= {"ece"}
    assert set(table["models"]["early"]) == keys | {"train_seconds"}
    assert table["models"]["late"]["nmi"] is None  # no label relation in this graph
    assert table["split"]["edges"]["Item/HAS_TAG/Tag"]["test"] > 0
    assert (report / "report.md").read_text().count("| early |") == 1
    assert (report / "curves.png").stat().st_size > 0
    # A second evaluation on the same split and settings reuses the saved runs.
    again = json.loads(runner.invoke(app, [*args, "--report", str(report)]).stdout)
    assert again["models"]["early"] == table["models"]["early"]
    assert len(list((tmp_path / "home" / "models").glob("2*"))) == 2


def test_evaluate_all_on_a_text_only_graph_prints_every_row_and_keeps_every_run(
    env: Settings, store: GraphStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMGRAPH_HOME", str(tmp_path / "home"))
    _graph(store)  # text only: nothing carries an image
    args = ["evaluate", "--all", "--epochs", "2", "--no-fastrp", "--json"]
    result = runner.invoke(app, [*args, "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["models"]
    assert list(rows) == [*MODEL_NAMES, "features"]
    refused = {name for name, row in rows.items() if row.get("reason")}
    assert refused == {"cca", "dcca", "adversarial"}
    assert all("text" in rows[name]["reason"] for name in refused)
    assert all(rows[name]["mrr"] is None for name in refused)
    assert all(rows[name]["mrr"] > 0 for name in MODEL_NAMES if name not in refused)
    saved = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)["runs"]
    assert sorted(r["model"] for r in saved) == sorted(set(MODEL_NAMES) - refused)
