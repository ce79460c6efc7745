"""Distributed training through the elastic launcher: two CPU ranks (gloo) on a tiny graph
train, agree, and match one process's validation MRR within a tolerance."""

from __future__ import annotations

import pytest
import torch

from mmgraph.core.errors import NotFoundError
from mmgraph.gnn import distributed
from mmgraph.gnn.launch import LaunchError, launch, run_experiment_distributed
from mmgraph.gnn.models import MODELS, GraphMeta
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig, train_model

from .ranks import refuse
from .test_experiment import _community_graph

CONFIG = TrainConfig(epochs=12, patience=12, seed=0)


def _split():
    data, _ = _community_graph()
    return split_graph(data, SplitConfig(label_relation="IN_GROUP", num_negatives=20))


def _train(config: TrainConfig) -> dict:
    """Train GCN on the tiny graph in this process (one rank of several, or alone)."""
    split = _split()
    meta = GraphMeta.from_data(split.graph("val"))
    model = MODELS["gcn"](meta, split.target_edge_types, hidden_channels=32, out_channels=32)
    result = train_model(model, split, config)
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {
        "rank": distributed.rank(),
        "world": distributed.world_size(),
        "best_val_mrr": result.best_val_mrr,
        "epochs": len(result.history),
        "weights": weights,
    }


def _on_every_rank(config: TrainConfig) -> list[dict]:
    """Every rank's :func:`_train`, gathered (what rank 0 returns)."""
    mine = _train(config)
    gathered: list[dict | None] = [None] * distributed.world_size()
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


def test_two_cpu_ranks_train_and_match_one_process() -> None:
    alone = _train(CONFIG)
    ranks = launch(_on_every_rank, 2, CONFIG)
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["world"] == 2
    assert all(r["epochs"] == CONFIG.epochs for r in ranks)
    # Every rank leaves with rank 0's best weights.
    torch.testing.assert_close(ranks[0]["weights"], ranks[1]["weights"])
    # 20 candidates per edge: random ranking gives an MRR of about 0.18.
    assert ranks[0]["best_val_mrr"] > 0.3
    assert ranks[0]["best_val_mrr"] == pytest.approx(alone["best_val_mrr"], abs=0.08)


def test_bad_launches_are_refused() -> None:
    with pytest.raises(LaunchError, match="nproc"):
        launch(_train, 0, CONFIG)
    with pytest.raises(LaunchError, match="progress"):
        run_experiment_distributed(nproc=2, progress=print)


def test_a_workers_error_reaches_the_caller_as_its_own_kind() -> None:
    # Not torch's ChildFailedError: the CLI maps the kind to its exit code, as in one process.
    with pytest.raises(NotFoundError, match="no such relation 'LIKES'"):
        launch(refuse, 1, "no such relation 'LIKES'")
