"""The training loop: full-batch and mini-batch (our sampler through PyG's loaders) both learn,
early stopping keeps the best epoch, and bad settings are refused."""

from __future__ import annotations

import math

import pytest
import torch

from mmgraph.gnn import train as train_module
from mmgraph.gnn.models import MODELS, GraphMeta
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import (
    TrainConfig,
    TrainConfigError,
    _two_hop_negatives,
    link_loss,
    train_model,
)

from .test_experiment import _community_graph


@pytest.fixture(scope="module")
def split():
    data, _ = _community_graph()
    config = SplitConfig(label_relation="IN_GROUP", num_negatives=20, num_hard_negatives=5)
    return split_graph(data, config)


@pytest.mark.parametrize("batch_size", [None, 64])
def test_training_learns_full_batch_and_mini_batch(split, batch_size: int | None) -> None:
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS["hgt"](meta, split.target_edge_types, hidden_channels=32, out_channels=32)
    config = TrainConfig(epochs=15, patience=15, batch_size=batch_size, num_neighbors=(5, 5))
    result = train_model(model, split, config)
    assert result.mode == ("full" if batch_size is None else "mini")
    assert len(result.history) == 15
    best = max(row["val_mrr"] for row in result.history)
    assert result.best_val_mrr == best
    assert result.history[result.best_epoch - 1]["val_mrr"] == best
    # 25 candidates per edge: random ranking gives an MRR of about 0.15.
    assert best > 0.3, result.history


def test_early_stopping_stops_after_patience(split) -> None:
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS["early"](meta, split.target_edge_types, hidden_channels=16, out_channels=16)
    result = train_model(model, split, TrainConfig(epochs=200, patience=3, lr=0.5))
    assert len(result.history) < 200
    assert len(result.history) - result.best_epoch == 3


def test_bad_settings_are_refused() -> None:
    with pytest.raises(TrainConfigError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(TrainConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(TrainConfigError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(TrainConfigError, match="loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(TrainConfigError, match="negatives_shared_by"):
        TrainConfig(negatives_shared_by=0)


@pytest.mark.parametrize(("loss", "shared_by"), [("softmax", 1), ("bce", 1), ("softmax", 16)])
def test_both_losses_learn_with_own_or_shared_negatives(split, loss: str, shared_by: int) -> None:
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS["gcn"](meta, split.target_edge_types, hidden_channels=32, out_channels=32)
    config = TrainConfig(epochs=15, patience=15, loss=loss, negatives_shared_by=shared_by)
    result = train_model(model, split, config)
    # 25 candidates per edge: random ranking gives an MRR of about 0.15.
    assert result.best_val_mrr > 0.3, result.history


def test_hard_negatives_are_two_hops_from_the_true_end() -> None:
    # items 0, 1 -> tags: item 0 has tags 0, 1, 2; item 1 has tags 2, 3; tag 4 has no item.
    mp = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 2, 2, 3]])
    pos = torch.tensor([[5, 6, 7], [0, 3, 4]])
    hard = _two_hop_negatives(pos, mp, 6, 50, torch.Generator().manual_seed(0))
    assert hard.shape == (3, 50)
    assert set(hard[0].tolist()) == {1, 2}  # through item 0, never tag 0 itself
    assert set(hard[1].tolist()) == {2}  # through item 1
    assert len(set(hard[2].tolist())) > 2  # no way in: uniform over the six tags


@pytest.mark.parametrize(("name", "batch_size"), [("gcn", None), ("hgt", 64)])
def test_hard_negatives_train(split, name: str, batch_size: int | None) -> None:
    """Also in mini-batches, whose model embeds the seeds alone (hard ends come from them)."""
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS[name](meta, split.target_edge_types, hidden_channels=32, out_channels=32)
    config = TrainConfig(
        epochs=15,
        patience=15,
        hard_negatives=4,
        negatives_shared_by=16,
        batch_size=batch_size,
        num_neighbors=(5, 5),
    )
    assert train_model(model, split, config).best_val_mrr > 0.3


def test_a_step_whose_loss_runs_in_chunks_is_planned_and_trains(split, monkeypatch) -> None:
    """The memory budget measures a step by hooks on what it saves; a loss in several chunks
    (at planning time too, when the group size does not divide the chunk and the supervision
    fills one) takes its chunks' gradients inside that step, and neither may break the other."""
    monkeypatch.setattr(train_module, "LOSS_CHUNK", 16)
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS["gcn"](meta, split.target_edge_types, hidden_channels=16, out_channels=16)
    result = train_model(model, split, TrainConfig(epochs=3, patience=3, negatives_shared_by=5))
    assert result.mode == "full" and len(result.history) == 3
    assert all(math.isfinite(row["loss"]) for row in result.history)


def test_a_loss_in_chunks_that_reads_nothing_trained_has_no_gradient(split, monkeypatch) -> None:
    """A frozen decoder over fixed embeddings, beside layers still trained: the loss in chunks
    is computed, and nothing gets a gradient from it."""
    monkeypatch.setattr(train_module, "LOSS_CHUNK", 8)
    meta = GraphMeta.from_data(split.graph("val"))
    edge_type = split.target_edge_types[0]
    model = MODELS["gcn"](meta, split.target_edge_types, hidden_channels=8, out_channels=8)
    model.decoder.requires_grad_(False)
    z = {t: torch.randn(30, 8) for t in meta.node_types}
    pos = torch.stack([torch.randint(0, 30, (50,)), torch.randint(0, 30, (50,))])
    config = TrainConfig(negatives=6, negatives_shared_by=4)
    value = link_loss(model, z, edge_type, pos, config, torch.Generator(), pos)
    value.backward()
    assert math.isfinite(float(value.detach()))
    assert all(p.grad is None for p in model.parameters())


def test_the_loss_draws_negatives_among_the_candidates_given(split) -> None:
    """A mini-batch's negatives are its negative seeds: a destination outside the candidates
    is never drawn, however it scores."""
    meta = GraphMeta.from_data(split.graph("val"))
    edge_type = split.target_edge_types[0]
    model = MODELS["gcn"](meta, split.target_edge_types, hidden_channels=8, out_channels=8)
    z = {t: torch.zeros(10, 8) for t in meta.node_types}
    z[edge_type[0]][:, 0] = 1.0
    z[edge_type[2]][0, 0] = 1.0  # the only destination scoring above 0 against every source
    pos = torch.tensor([[0, 1, 2, 3], [5, 5, 6, 6]])
    config = TrainConfig(negatives=8, negatives_shared_by=2)
    empty = torch.empty(2, 0, dtype=torch.long)

    def loss(candidates):
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return link_loss(model, z, edge_type, pos, config, generator, empty, candidates)

    # Every logit 0: the cross-entropy of a positive among 8 equal negatives is log(9).
    assert float(loss(torch.tensor([1, 2, 3]))) == pytest.approx(math.log(9))
    assert float(loss(torch.tensor([0]))) > 10


@pytest.mark.parametrize(
    ("name", "loss", "hard", "edge_type"),
    [
        ("gcn", "softmax", 0, ("Item", "HAS_TAG", "Tag")),
        ("gcn", "bce", 2, ("Item", "HAS_TAG", "Tag")),
        ("hybrid", "softmax", 2, ("Item", "HAS_TAG", "Tag")),
        ("gcn", "softmax", 2, ("Item", "LIKES", "Item")),
    ],
)
def test_the_loss_in_chunks_equals_the_loss_in_one_piece(
    split, monkeypatch, name: str, loss: str, hard: int, edge_type: tuple[str, str, str]
) -> None:
    """Chunks, each computed once with its gradients, give the loss and every gradient
    (embeddings and the model's own parameters, under an upstream gradient other than 1) of
    the loss computed at once, a node type read both as source and destination included."""
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS[name](meta, [*split.target_edge_types, edge_type], 8, 8)
    z0 = {t: torch.randn(30, model.embedding_dim) for t in ("Item", "Tag")}
    pos = torch.stack([torch.randint(0, 30, (50,)), torch.randint(0, 30, (50,))])
    mp_edges = torch.stack([torch.randint(0, 30, (200,)), torch.randint(0, 30, (200,))])
    config = TrainConfig(loss=loss, negatives=6, negatives_shared_by=4, hard_negatives=hard)

    computed = []
    loss_sums = train_module._loss_sums

    def counted(*args):
        computed.append(1)
        return loss_sums(*args)

    monkeypatch.setattr(train_module, "_loss_sums", counted)

    def run(chunk: int):
        monkeypatch.setattr(train_module, "LOSS_CHUNK", chunk)
        model.zero_grad()
        computed.clear()
        z = {t: x.clone().requires_grad_() for t, x in z0.items()}
        generator = torch.Generator().manual_seed(0)
        value = link_loss(model, z, edge_type, pos, config, generator, mp_edges)
        (3.0 * value).backward()
        params = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return value.detach(), {t: x.grad for t, x in z.items()}, params

    whole, z_whole, p_whole = run(1_000_000)
    chunked, z_chunked, p_chunked = run(8)  # 13 groups of 4 in 7 chunks
    assert len(computed) == 7  # no chunk rebuilt in the backward pass
    torch.testing.assert_close(chunked, whole)
    for t in z_whole:
        torch.testing.assert_close(z_chunked[t], z_whole[t])
    assert p_whole and p_chunked.keys() == p_whole.keys()
    for n in p_whole:
        torch.testing.assert_close(p_chunked[n], p_whole[n])
