"""Every model trains on a small graph with real structure, beats random ranking clearly, and
its run directory answers the service's questions."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from mmgraph.gnn import experiment
from mmgraph.gnn.alignment import choice_nodes, pairs, without_choice_nodes
from mmgraph.gnn.experiment import (
    MODEL_NAMES,
    compare_models,
    feature_embeddings,
    run_experiment,
)
from mmgraph.gnn.fusion.cca_embedding import CCABaselineError
from mmgraph.gnn.models import ModelConfigError
from mmgraph.gnn.models.alignment import paired_rows
from mmgraph.gnn.report import write_report
from mmgraph.gnn.runs import list_runs, load_run, set_active_run
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig

N_GROUPS, PER_GROUP, TAGS_PER_GROUP = 4, 30, 8


def _community_graph(
    seed: int = 0, per_group: int = PER_GROUP
) -> tuple[HeteroData, dict[str, list[str]]]:
    """Items in 4 groups; each item is tagged with 3 of its group's tags; text and image
    features carry the group (noisily), some items lack their image."""
    g = torch.Generator().manual_seed(seed)
    n_items, n_tags = N_GROUPS * per_group, N_GROUPS * TAGS_PER_GROUP
    group = torch.arange(n_items) // per_group
    tag_group = torch.arange(n_tags) // TAGS_PER_GROUP
    centres_t, centres_i = (
        torch.randn(N_GROUPS, 16, generator=g),
        torch.randn(N_GROUPS, 12, generator=g),
    )
    data = HeteroData()
    data["Item"].num_nodes = n_items
    data["Item"].text_x = centres_t[group] + 0.8 * torch.randn(n_items, 16, generator=g)
    data["Item"].text_mask = torch.ones(n_items, dtype=torch.bool)
    data["Item"].image_x = centres_i[group] + 0.8 * torch.randn(n_items, 12, generator=g)
    data["Item"].image_mask = torch.arange(n_items) % 5 != 0
    data["Tag"].num_nodes = n_tags
    data["Tag"].text_x = centres_t[tag_group] + 0.8 * torch.randn(n_tags, 16, generator=g)
    data["Tag"].text_mask = torch.ones(n_tags, dtype=torch.bool)
    data["Group"].num_nodes = N_GROUPS
    src, dst = [], []
    for item in range(n_items):
        choice = torch.randperm(TAGS_PER_GROUP, generator=g)[:3] + group[item] * TAGS_PER_GROUP
        src += [item] * 3
        dst += choice.tolist()
    data["Item", "HAS_TAG", "Tag"].edge_index = torch.tensor([src, dst])
    data["Item", "IN_GROUP", "Group"].edge_index = torch.stack([torch.arange(n_items), group])
    uids = {
        "Item": [f"i:{i}" for i in range(n_items)],
        "Tag": [f"t:{i}" for i in range(n_tags)],
        "Group": [f"g:{i}" for i in range(N_GROUPS)],
    }
    return data, uids


@pytest.fixture(scope="module")
def split():
    data, uids = _community_graph()
    config = SplitConfig(label_relation="IN_GROUP", num_negatives=20, num_hard_negatives=5)
    return split_graph(data, config), uids


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_each_model_beats_random_ranking_clearly(split, model: str, tmp_path: Path) -> None:
    link_split, uids = split
    config = TrainConfig(epochs=25, patience=25, seed=0)
    result = run_experiment(
        model=model,
        split=link_split,
        uids=uids,
        train_config=config,
        model_options={} if model == "cca" else {"hidden_channels": 32, "out_channels": 32},
        home=tmp_path,
    )
    # 25 candidates per edge: random ranking gives an MRR of about 0.15.
    assert result.metrics["mrr"] > 0.3, result.metrics
    assert 0.0 <= result.metrics["nmi"] <= 1.0
    assert result.metrics["recall@10"] is not None
    run = load_run(tmp_path, result.run_id)
    assert run.model == model and run.uids == uids
    fused = run.embeddings("fused")
    assert fused["Item"].shape[0] == 120 and np.isfinite(fused["Item"]).all()
    np.testing.assert_allclose(np.linalg.norm(fused["Item"], axis=1), 1.0, rtol=1e-4)
    query = run.embed_query("Item", "text", link_split.base["Item"].text_x[:3].numpy(), "image")
    assert query.shape == (3, fused["Item"].shape[1])
    # A node's own text, as a query, lands exactly on its row of the text space (same centre).
    rows = run.space_rows("text")["Item"][:3]
    own = run.embed_query("Item", "text", link_split.base["Item"].text_x[rows].numpy(), "text")
    np.testing.assert_allclose(own, run.embeddings("text")["Item"][:3], atol=1e-4)
    # Centred spaces: scores spread instead of all sitting near 1.
    cosines = fused["Item"] @ fused["Item"].T
    assert np.median(cosines) < 0.9
    edge_type = ("Item", "HAS_TAG", "Tag")
    probs = run.score_from(edge_type, 0)
    assert probs.shape == (32,) and ((probs >= 0) & (probs <= 1)).all()
    pair = run.score_links(edge_type, np.array([0, 0]), np.array([1, 2]))
    np.testing.assert_allclose(pair, probs[[1, 2]], rtol=1e-5)
    set_active_run(tmp_path, result.run_id)
    assert load_run(tmp_path).run_id == result.run_id
    assert [r.run_id for r in list_runs(tmp_path)] == [result.run_id]


def test_feature_anchor_ranks_by_the_encoders_cosine(split) -> None:
    link_split, uids = split
    graph = link_split.graph("test")
    z = feature_embeddings(graph)
    # Items: image (12) then text (16) blocks side by side; tags: zeros for the image, text.
    assert z["Item"].shape == (120, 28) and z["Tag"].shape == (32, 28)
    assert torch.all(z["Tag"][:, :12] == 0) and z["Group"].shape == (4, 28)
    no_image = ~graph["Item"].image_mask
    assert torch.all(z["Item"][no_image, :12] == 0)
    text = torch.nn.functional.normalize(graph["Item"].text_x, dim=1)
    torch.testing.assert_close(z["Item"][:, 12:], text)
    table = compare_models(split=link_split, uids=uids, models=["cca"]).table["models"]
    assert set(table) == {"cca", "features"}
    assert table["features"]["mrr"] > 0.3 and table["features"]["recall@10"] is None


def test_the_alignment_family_shares_one_table_and_report(split, tmp_path: Path) -> None:
    link_split, uids = split
    models = ["autoencoder", "adversarial", "cca", "dcca"]
    comparison = compare_models(
        split=link_split,
        uids=uids,
        models=models,
        train_config=TrainConfig(epochs=3, patience=3),
        features=False,
    )
    table = comparison.table["models"]
    assert list(table) == models
    for name in models:
        assert all(table[name][k] is not None for k in ("mrr", "nmi", "recall@10")), name
    # Deep CCA's curve is its held-out correlation: not drawn beside the validation MRRs.
    assert "val_corr" in comparison.histories["dcca"][0]
    report = write_report(tmp_path, comparison.table, comparison.histories, comparison.maps)
    assert report.read_text().count("| dcca |") == 1 and (tmp_path / "curves.png").exists()


def test_without_images_the_alignment_models_refuse_naming_what_is_missing(split) -> None:
    link_split, uids = split
    base = link_split.base.clone()
    del base["Item"].image_x, base["Item"].image_mask
    text_only = dataclasses.replace(link_split, base=base, retrieval_nodes={})
    config = TrainConfig(epochs=2, patience=2)
    run = functools.partial(run_experiment, split=text_only, uids=uids, train_config=config)
    with pytest.raises(ModelConfigError, match="no node type carries both"):
        run(model="adversarial")
    with pytest.raises(CCABaselineError, match="deep CCA needs .* both text and image"):
        run(model="dcca")
    # A single-modality autoencoder still applies (it reconstructs the text).
    assert run(model="autoencoder").metrics["mrr"] > 0


def test_a_run_saved_before_the_input_skip_still_loads(split, tmp_path: Path) -> None:
    link_split, uids = split
    options = {"hidden_channels": 16, "out_channels": 16, "input_skip": False}
    result = run_experiment(
        model="gcn",
        split=link_split,
        uids=uids,
        train_config=TrainConfig(epochs=2, patience=2),
        model_options=options,
        home=tmp_path,
    )
    # Such a run's config names no input_skip, and its weights hold no skip.
    path = result.path / "run.json"
    raw = json.loads(path.read_text())
    del raw["config"]["model_options"]["input_skip"]
    path.write_text(json.dumps(raw))
    run = load_run(tmp_path, result.run_id)
    query = run.embed_query("Item", "text", link_split.base["Item"].text_x[:2].numpy(), "text")
    assert query.shape == (2, 16) and np.isfinite(query).all()


def test_evaluation_reuses_a_run_only_from_the_same_code_and_options(
    split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link_split, uids = split
    config = TrainConfig(epochs=2, patience=2)

    def compare() -> str:
        runs = compare_models(
            split=link_split,
            uids=uids,
            models=["early"],
            train_config=config,
            home=tmp_path,
            features=False,
        ).run_ids
        return runs["early"]

    run_experiment(
        model="early",
        split=link_split,
        uids=uids,
        train_config=config,
        model_options={"hidden_channels": 16},
        home=tmp_path,
    )
    first = compare()  # the saved run has other options: trained afresh
    assert len(list_runs(tmp_path)) == 2
    assert compare() == first  # same split, settings, options and code: reused
    monkeypatch.setattr(experiment, "code_version", lambda: "changed")
    assert compare() != first  # the code changed: trained afresh
    assert len(list_runs(tmp_path)) == 3


def test_link_probabilities_are_calibrated_on_held_out_edges() -> None:
    data, uids = _community_graph(per_group=120)  # enough held-out edges to fill several bins
    link_split = split_graph(
        data, SplitConfig(label_relation="IN_GROUP", num_negatives=20, num_hard_negatives=5)
    )
    result = run_experiment(
        model="early",
        split=link_split,
        uids=uids,
        train_config=TrainConfig(epochs=25, patience=25, seed=0),
        model_options={"hidden_channels": 32, "out_channels": 32},
    )
    # Bins of at least 100 draws: at a rate near 0.2 a bin of 30 has a standard error of 0.07,
    # so a bound of 0.1 on every such bin failed by chance.
    bins = [(mean, rate) for mean, rate, count in result.metrics["reliability"] if count >= 100]
    assert len(bins) >= 2  # the test edges and candidates fill more than one bin
    for mean, rate in bins:
        assert abs(mean - rate) <= 0.1, (mean, rate)
    assert result.metrics["ece"] <= 0.1


def test_every_run_aligns_text_with_images_whichever_model(tmp_path: Path) -> None:
    data, uids = _community_graph(per_group=120)  # 384 items with text and image
    # Each item's picture a linear image of its own text: a pairing CCA can find item by item.
    g = torch.Generator().manual_seed(1)
    text = data["Item"].text_x
    data["Item"].image_x = text @ torch.randn(16, 12, generator=g) + 0.3 * torch.randn(
        text.size(0), 12, generator=g
    )
    link_split = split_graph(data, SplitConfig(label_relation="IN_GROUP"))
    result = run_experiment(
        model="late",  # its text and image blocks never meet: alone, it retrieves nothing
        split=link_split,
        uids=uids,
        train_config=TrainConfig(epochs=5, patience=5, seed=0),
        model_options={"hidden_channels": 32, "out_channels": 32},
        home=tmp_path,
    )
    run = load_run(tmp_path, result.run_id)
    assert run.config["alignment"]["kind"] == "cca" and run.aligned
    nodes = link_split.retrieval_nodes["Item"]
    chance = 10 / len(nodes)  # Recall@10 of a random ranking
    assert result.metrics["recall@10"] >= 2.5 * chance > result.metrics["own_recall@10"]
    text = run.embed_query("Item", "text", data["Item"].text_x[nodes].numpy(), "image")
    rows = run.space_rows("image")["Item"]
    images = run.embeddings("image")["Item"][np.searchsorted(rows, nodes.numpy())]
    assert (np.argmax(text @ images.T, axis=1) == np.arange(len(nodes))).mean() > 0.05


def test_mgat_keeps_each_nodes_modality_weights(split, tmp_path: Path) -> None:
    link_split, uids = split
    result = run_experiment(
        model="mgat",
        split=link_split,
        uids=uids,
        train_config=TrainConfig(epochs=2, patience=2),
        model_options={"hidden_channels": 16, "out_channels": 16},
        home=tmp_path,
    )
    run = load_run(tmp_path, result.run_id)
    both = run.modality_weights("Item", 1)  # item 1 has text and image
    assert set(both) == {"image", "text"} and sum(both.values()) == pytest.approx(1.0)
    assert run.modality_weights("Item", 0) == {"image": 0.0, "text": 1.0}  # no image
    assert load_run(tmp_path, result.run_id).modality_weights("Tag", 0) == {"text": 1.0}


def test_the_pairs_that_choose_an_alignment_are_never_paired_in_training(split) -> None:
    split, _ = split
    held = choice_nodes(split, seed=0)["Item"]
    assert 0 < held.numel() < pairs(split)["Item"].numel()
    trained_on = without_choice_nodes(split, {"Item": held})
    # Every pair a cross-modal term may draw leaves out the choice nodes and the retrieval nodes.
    drawn = paired_rows(trained_on.base, ["Item"], "text", "image", max_nodes=10_000)[0][1]
    assert not set(drawn.tolist()) & set(held.tolist())
    assert not set(drawn.tolist()) & set(split.retrieval_nodes["Item"].tolist())
    # The split every model is evaluated on is left as it was.
    assert (
        int(split.base["Item"].contrastive_exclude.sum()) == split.retrieval_nodes["Item"].numel()
    )
