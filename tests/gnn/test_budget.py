"""The memory budget decides between full-batch and mini-batches, from an estimate that grows
with the graph."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch

from mmgraph.gnn import train as train_module
from mmgraph.gnn.budget import epoch_bytes
from mmgraph.gnn.models import MODELS, GraphMeta
from mmgraph.gnn.sampler import make_neighbor_sampler
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import (
    Objective,
    TrainConfig,
    _activations,
    _BatchCost,
    neighbours,
    plan_training,
    step_activations,
    train_model,
)

from .test_experiment import _community_graph


@pytest.fixture(scope="module")
def split():
    data, _ = _community_graph()
    return split_graph(data, SplitConfig(label_relation="IN_GROUP", num_negatives=20))


def _model(split, name: str = "gcn"):
    meta = GraphMeta.from_data(split.graph("val"))
    return MODELS[name](meta, split.target_edge_types, hidden_channels=16, out_channels=16)


@pytest.mark.parametrize(("budget", "mode"), [(10**11, "full"), (10_000, "mini")])
def test_the_budget_decides_the_mode(split, budget: int, mode: str) -> None:
    config = TrainConfig(epochs=12, patience=12, memory_budget=budget, num_neighbors=(5, 5))
    result = train_model(_model(split), split, config)
    assert result.mode == mode
    assert result.memory_budget == budget
    assert (result.batch_size is None) == (mode == "full")
    assert result.full_batch_bytes > 10_000
    # 20 candidates per edge: random ranking gives an MRR of about 0.18.
    assert result.best_val_mrr > 0.3, result.history


def test_the_budget_comes_from_the_environment(split, monkeypatch) -> None:
    monkeypatch.setenv("MMGRAPH_TRAIN_MEMORY", "10000")
    result = train_model(_model(split), split, TrainConfig(epochs=1))
    assert (result.mode, result.memory_budget) == ("mini", 10_000)


def test_the_plan_counts_what_the_process_already_holds(split) -> None:
    """The budget bounds the process's peak, so the interpreter and libraries (hundreds of MB
    on the CPU) are part of the estimate: a budget that fits the step alone but not them
    forces mini-batches."""
    objective = Objective(_model(split), TrainConfig())
    full = plan_training(objective, split, TrainConfig(), torch.device("cpu"))
    assert full.mode == "full"
    assert full.process_bytes > 100 * 2**20
    step_alone = full.full_batch_bytes - full.process_bytes
    tight = TrainConfig(memory_budget=step_alone + full.process_bytes // 2, num_neighbors=(5, 5))
    assert plan_training(objective, split, tight, torch.device("cpu")).mode == "mini"


def test_batches_are_estimated_on_a_real_sampled_batch(split) -> None:
    """A trimmed batch's later layers keep little, which stand-ins of the whole graph cannot
    show: a mini-batch step is measured on a real batch and scaled by the share it reaches."""
    config = TrainConfig(num_neighbors=(5, 5))
    objective = Objective(_model(split, "hgt"), config)
    graph, supervision = split.train_graph(torch.Generator().manual_seed(0))
    objective.train()
    line, _ = _activations(objective, split, graph)
    sampler = make_neighbor_sampler(graph, neighbours(graph, config), seed=0)
    cost = _BatchCost(objective, graph, supervision, sampler)
    share, step = cost(8)
    assert 0 < share < 1
    assert 0 < step < line.peak(share)
    larger_share, larger_step = cost(32)
    assert larger_share > share
    assert larger_step == int(step * larger_share / share)


@contextmanager
def _tensors_made_within() -> Iterator[list[torch.Tensor]]:
    """Gives a list that, once the block is done, holds the tensors made in it and still alive
    (after a collection). What is older is frozen out of the collector's sight first, so the
    collection and the search after the block see only what the block made: walking the whole
    heap, with the suite's libraries loaded, took about a second a test."""
    gc.collect()
    gc.freeze()
    made: list[torch.Tensor] = []
    try:
        yield made
        gc.collect()
        made.extend(o for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter))
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("name", ["gcn", "mgat", "hgt"])
def test_the_estimate_grows_with_the_graph(split, name: str) -> None:
    model = _model(split, name)
    objective = Objective(model, TrainConfig())
    graph, _ = split.train_graph(torch.Generator().manual_seed(0))
    activations = step_activations(objective, split, graph)
    assert activations.slope > 0
    assert activations.peak(2.0) > activations.peak(1.0) > activations.peak(0.1)
    # Nothing the measured steps made outlives them (their loss tensors once did: 0.9 GB).
    with _tensors_made_within() as left:
        assert step_activations(objective, split, graph) == activations
    assert not left
    assert epoch_bytes(split, graph) > 0


def test_the_chunked_loss_does_not_grow_the_estimate(split) -> None:
    """The loss keeps one chunk of positives at a time, so supervising twice as many edges
    (each beyond a chunk) leaves the estimate's growth with the graph unchanged."""
    model = _model(split)
    objective = Objective(model, TrainConfig())
    graph, _ = split.train_graph(torch.Generator().manual_seed(0))
    slopes = []
    for ratio in (0.3, 0.6):
        supervised = replace(split, config=replace(split.config, supervision_ratio=ratio))
        slopes.append(step_activations(objective, supervised, graph, loss_chunk=4).slope)
    assert slopes[0] == pytest.approx(slopes[1], rel=1e-6)


def test_recomputed_layers_are_estimated_one_layer_at_a_time(split, monkeypatch) -> None:
    """HGT can rebuild its layers in the backward pass: its estimate then lies between keeping
    only the layers' inputs and keeping everything, and the plan counts one layer of the
    difference. It keeps everything when that fits the budget, and rebuilds when only the
    rebuilding step does."""
    monkeypatch.setattr(train_module, "process_bytes", lambda split, device: 0)
    model = _model(split, "hgt")
    objective = Objective(model, TrainConfig())
    graph, _ = split.train_graph(torch.Generator().manual_seed(0))
    measured = {}
    for recompute in (True, False):
        model.recompute_layers = recompute
        measured[recompute] = step_activations(objective, split, graph)
    assert measured[True].slope < measured[False].slope
    model.recompute_layers = True
    held = epoch_bytes(split, graph)
    expected = measured[True].recomputing(measured[False], model.num_layers)
    assert measured[True].peak(1.0) < expected.peak(1.0) < measured[False].peak(1.0)

    roomy = plan_training(objective, split, TrainConfig(), torch.device("cpu"))
    assert (roomy.mode, roomy.recompute_layers) == ("full", False)
    assert roomy.full_batch_bytes == held + measured[False].peak(1.0)
    tight = TrainConfig(memory_budget=roomy.full_batch_bytes - 1)
    planned = plan_training(objective, split, tight, torch.device("cpu"))
    assert (planned.mode, planned.recompute_layers) == ("full", None)
    assert planned.full_batch_bytes == held + expected.peak(1.0)
    assert model.recompute_layers


@pytest.mark.parametrize(("budget", "recomputed"), [(None, False), (1, True)])
def test_training_rebuilds_layers_only_when_the_plan_says(
    split, budget: int | None, recomputed: bool
) -> None:
    """What the plan chose is what training did, and the model's own setting is left as it was."""
    model = _model(split, "hgt")
    config = TrainConfig(epochs=1, memory_budget=budget, num_neighbors=(5, 5))
    during = []
    result = train_model(model, split, config, lambda _, row: during.append(model.recompute_layers))
    assert during == [recomputed]
    assert result.recompute_layers is recomputed
    assert model.recompute_layers
