"""The training loop: full-batch and mini-batch (our sampler through PyG's loaders) both learn,
early stopping keeps the best epoch, and bad settings are refused."""

from __future__ import annotations

import pytest

from mmgraph.gnn.models import MODELS, GraphMeta
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig, TrainConfigError, train_model

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


@pytest.mark.parametrize("loss", ["softmax", "bce"])
def test_both_losses_learn(split, loss: str) -> None:
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS["gcn"](meta, split.target_edge_types, hidden_channels=32, out_channels=32)
    result = train_model(model, split, TrainConfig(epochs=15, patience=15, loss=loss))
    # 25 candidates per edge: random ranking gives an MRR of about 0.15.
    assert result.best_val_mrr > 0.3, result.history
