"""Nodes added after training get embeddings from the run's own model, reproducing exactly what
training computed for an unchanged graph; the overlay merges into the run; the staleness policy
triggers above its threshold only. On a small graph in the real Neo4j."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmgraph.gnn.data import export_heterodata
from mmgraph.gnn.experiment import run_experiment
from mmgraph.gnn.inductive import (
    NewNodes,
    ThresholdError,
    infer_new_nodes,
    inference_graph,
    is_stale,
    split_config,
    staleness,
    validation_metrics,
)
from mmgraph.gnn.runs import ModelRun, append_nodes, load_run
from mmgraph.gnn.runs.overlay import FRESH
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig, embed
from mmgraph.graph.store import GraphStore, NodeRow, RelRow

TEXT, IMAGE = 16, 12
GROUPS, ITEMS, TAGS = 2, 10, 4  # per group
CENTRES = np.random.default_rng(42).normal(size=(GROUPS, TEXT + IMAGE))


def _vectors(group: int, rng: np.random.Generator, image: bool) -> dict:
    x = CENTRES[group] + 0.5 * rng.normal(size=TEXT + IMAGE)
    out = {"text": (x[:TEXT].astype(np.float32), "test-text@1")}
    if image:
        out["image"] = (x[TEXT:].astype(np.float32), "test-image@1")
    return out


def _write_graph(store: GraphStore) -> None:
    """Two groups of ten items, each tagged with two of its group's four tags; items without
    an image every fifth; IN_GROUP is the label relation."""
    rng = np.random.default_rng(0)
    nodes, rels = [], []
    for g in range(GROUPS):
        nodes.append(NodeRow(f"g:{g}", "Group"))
        for t in range(TAGS):
            nodes.append(
                NodeRow(f"t:{g}.{t}", "Tag", {"text": f"tag {g}.{t}"}, _vectors(g, rng, False))
            )
        for i in range(ITEMS):
            uid = f"i:{g}.{i}"
            nodes.append(
                NodeRow(uid, "Item", {"text": f"item {g}.{i}"}, _vectors(g, rng, i % 5 != 0))
            )
            rels.append(RelRow(uid, f"g:{g}", "IN_GROUP"))
            rels += [
                RelRow(uid, f"t:{g}.{t}", "HAS_TAG") for t in rng.choice(TAGS, 2, replace=False)
            ]
    store.write_batch(nodes, [], "test")
    store.write_batch([], rels, "test")


def _train(store: GraphStore, home: Path, model: str) -> ModelRun:
    export = export_heterodata(store)
    config = SplitConfig(label_relation="IN_GROUP", num_negatives=5, num_hard_negatives=1)
    result = run_experiment(
        model=model,
        split=split_graph(export.data, config),
        uids=export.uids,
        train_config=TrainConfig(epochs=2, device="cpu"),
        model_options={"n_components": 4}
        if model == "cca"
        else {"hidden_channels": 16, "out_channels": 16},
        home=home,
    )
    return load_run(home, result.run_id)


def _add_items(store: GraphStore, specs: list[tuple[str, int, list[str], bool]]) -> None:
    """New items ``(uid, group, tags, image)`` with their HAS_TAG and IN_GROUP links."""
    rng = np.random.default_rng(7)
    store.write_batch(
        [
            NodeRow(uid, "Item", {"text": uid}, _vectors(g, rng, image))
            for uid, g, _, image in specs
        ],
        [],
        "later",
    )
    rels = [RelRow(uid, t, "HAS_TAG") for uid, _, tags, _ in specs for t in tags]
    rels += [RelRow(uid, f"g:{g}", "IN_GROUP") for uid, g, _, _ in specs]
    store.write_batch([], rels, "later")


@pytest.mark.parametrize("model", ["hgt", "gcn"])
def test_the_unchanged_graph_reproduces_the_trained_embeddings(
    store: GraphStore, tmp_path: Path, model: str
) -> None:
    _write_graph(store)
    run = _train(store, tmp_path, model)
    export = export_heterodata(store)
    graph = inference_graph(run, export)
    assert not any(rel == "IN_GROUP" for _, rel, _ in graph.edge_types)
    z = embed(run.network().model, graph, torch.device("cpu"))
    for node_type, raw in run.raw_embeddings().items():
        assert export.uids[node_type] == run.uids[node_type]
        np.testing.assert_allclose(z[node_type].numpy(), raw, rtol=1e-4, atol=1e-5)
    assert infer_new_nodes(run, export).count == 0


def test_new_nodes_are_embedded_from_their_neighbourhood(store: GraphStore, tmp_path: Path) -> None:
    _write_graph(store)
    run = _train(store, tmp_path, "hgt")
    _add_items(
        store,
        [
            ("i:new.a", 0, ["t:0.0", "t:0.1"], True),
            ("i:new.b", 1, ["t:1.2"], False),
        ],
    )
    # Same features as i:new.a, other neighbours.
    a = store.get_node("i:new.a")
    twin = {m: (v, tag) for m, (v, tag) in a.vectors.items()}
    store.write_batch([NodeRow("i:new.twin", "Item", {}, twin), NodeRow("s:1", "Shop")], [], "x")
    store.write_batch([], [RelRow("i:new.twin", "t:1.3", "HAS_TAG")], "x")
    export = export_heterodata(store)

    new = infer_new_nodes(run, export)

    assert sorted(new.uids["Item"]) == ["i:new.a", "i:new.b", "i:new.twin"]
    assert set(new.uids) == {"Item"} and new.unknown_types == {"Shop": 1}
    raw = new.raw["Item"]
    assert raw.shape == (3, run.raw_embeddings()["Item"].shape[1]) and np.isfinite(raw).all()
    fused, rows = new.spaces["fused"]["Item"]
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)
    assert rows.tolist() == [0, 1, 2]
    row = {uid: i for i, uid in enumerate(new.uids["Item"])}
    assert not np.allclose(raw[row["i:new.a"]], raw[row["i:new.twin"]], atol=1e-4)
    # Single-modality spaces: every new item has a text, i:new.b has no image.
    image_rows = new.spaces["image"]["Item"][1]
    assert sorted(new.uids["Item"][i] for i in image_rows) == ["i:new.a", "i:new.twin"]
    text, text_rows = new.spaces["text"]["Item"]
    x = export.data["Item"].text_x[export.index("Item")[new.uids["Item"][text_rows[0]]]]
    np.testing.assert_allclose(
        text[0], run.embed_query("Item", "text", x[None].numpy(), "text")[0], atol=1e-5
    )


def test_a_closed_form_run_projects_the_new_nodes_features(
    store: GraphStore, tmp_path: Path
) -> None:
    _write_graph(store)
    run = _train(store, tmp_path, "cca")
    old = store.get_node("i:1.3")
    store.write_batch([NodeRow("i:copy", "Item", {}, dict(old.vectors))], [], "later")

    new = infer_new_nodes(run, export_heterodata(store))

    assert new.uids == {"Item": ["i:copy"]}
    stored = run.embeddings("fused")["Item"][run.uids["Item"].index("i:1.3")]
    np.testing.assert_allclose(new.spaces["fused"]["Item"][0][0], stored, atol=1e-5)


def test_appended_nodes_merge_into_the_run(store: GraphStore, tmp_path: Path) -> None:
    _write_graph(store)
    run = _train(store, tmp_path, "hgt")
    before = {s: run.embeddings(s) for s in run.spaces}
    _add_items(store, [("i:new.a", 0, ["t:0.0"], True), ("i:new.b", 1, ["t:1.0"], False)])
    new = infer_new_nodes(run, export_heterodata(store))

    assert append_nodes(run, new.uids, new.raw, new.spaces) == 2
    assert append_nodes(run, new.uids, new.raw, new.spaces) == 0  # already there
    merged = load_run(tmp_path, run.run_id)

    n = len(run.trained_uids["Item"])
    assert merged.trained_uids == run.trained_uids
    assert merged.uids["Item"] == run.trained_uids["Item"] + new.uids["Item"]
    assert merged.fresh_version == 1 and (merged.path / FRESH).is_file()
    for space in run.spaces:
        emb = merged.embeddings(space)["Item"]
        old = before[space]["Item"]
        np.testing.assert_array_equal(emb[: len(old)], old)  # trained rows untouched
    rows = merged.space_rows("image")["Item"]
    assert (
        merged.uids["Item"][rows[-1]] == "i:new.a"
        and len(rows) == len(run.space_rows("image")["Item"]) + 1
    )
    np.testing.assert_array_equal(merged.raw_embeddings()["Item"][n:], new.raw["Item"])
    assert run.refreshed() is not run and merged.refreshed() is merged
    assert infer_new_nodes(merged, export_heterodata(store)).count == 0


def test_staleness_triggers_above_the_threshold_only(store: GraphStore, tmp_path: Path) -> None:
    _write_graph(store)
    run = _train(store, tmp_path, "hgt")
    trained_nodes = GROUPS * (1 + TAGS + ITEMS)
    trained_edges = GROUPS * ITEMS * 2
    fresh = staleness(run, export_heterodata(store))
    assert (fresh.new_nodes, fresh.new_edges) == (0, 0)
    assert (fresh.trained_nodes, fresh.trained_edges) == (trained_nodes, trained_edges)

    _add_items(
        store, [(f"i:new.{k}", k % 2, [f"t:{k % 2}.0", f"t:{k % 2}.1"], True) for k in range(6)]
    )
    export = export_heterodata(store)
    found = staleness(run, export)

    assert found.new_nodes == 6 and found.node_share == pytest.approx(6 / trained_nodes)
    assert found.new_edges == 12 and found.edge_share == pytest.approx(12 / trained_edges)
    assert is_stale(run, export, threshold=0.25)  # edge share 0.3
    assert not is_stale(run, export, threshold=0.35)
    with pytest.raises(ThresholdError):
        is_stale(run, export, threshold=1.5)
    # Nodes embedded since training still count against the run.
    new = infer_new_nodes(run, export)
    append_nodes(run, new.uids, new.raw, new.spaces)
    assert staleness(load_run(tmp_path, run.run_id), export) == found


def test_a_run_is_evaluated_again_on_its_own_protocol(store: GraphStore, tmp_path: Path) -> None:
    _write_graph(store)
    run = _train(store, tmp_path, "hgt")
    export = export_heterodata(store)

    split = split_graph(export.data, split_config(run))

    assert split.describe() == run.config["split"]
    best = max(row["val_mrr"] for row in run.history)
    assert validation_metrics(run, split)["mrr"] == pytest.approx(best, abs=1e-5)


def test_no_new_nodes_costs_no_inference(store: GraphStore, tmp_path: Path) -> None:
    _write_graph(store)
    run = _train(store, tmp_path, "gcn")
    assert infer_new_nodes(run, export_heterodata(store)) == NewNodes()
