"""A batch sampled one hop per layer is embedded layer by layer on the nodes later layers
read (``trim_to_layer``): the seeds' embeddings are exactly those of the whole batch."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.loader import NodeLoader

from mmgraph.gnn.models import GCN, HGT, MGAT, GraphMeta
from mmgraph.gnn.sampler import TorchNeighborSampler

from .cases import TARGETS, toy_graph


def _batch(num_hops: int, num_items: int = 60):
    data = toy_graph(num_items=num_items, num_tags=20)
    sampler = TorchNeighborSampler(data, [3] * num_hops, seed=0)
    loader = NodeLoader(
        data, node_sampler=sampler, input_nodes=("Item", torch.arange(5)), batch_size=5
    )
    return data, next(iter(loader))


def _untrimmed(batch):
    """The same batch without its per-hop counts: every layer runs on every node."""
    out = copy.copy(batch)
    for store in out.node_stores:
        del store.num_sampled_nodes
    for store in out.edge_stores:
        del store.num_sampled_edges
    return out


@pytest.mark.parametrize("cls", [GCN, HGT, MGAT])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_trimmed_batches_give_the_seeds_exact_embeddings(cls, num_layers: int) -> None:
    data, batch = _batch(num_layers)
    torch.manual_seed(0)
    model = cls(GraphMeta.from_data(data), TARGETS, 16, 16, num_layers=num_layers).eval()
    whole = model(_untrimmed(batch))
    trimmed = model(batch)
    seeds = batch["Item"].num_sampled_nodes[0]
    assert trimmed["Item"].size(0) == seeds == 5
    assert batch["Tag"].num_nodes > 0
    torch.testing.assert_close(trimmed["Item"], whole["Item"][:seeds], rtol=1e-5, atol=1e-5)
    for node_type in ("Tag", "Category"):
        assert trimmed[node_type].size(0) == 0


@pytest.mark.parametrize("cls", [GCN, HGT, MGAT])
def test_a_batch_sampled_to_another_depth_is_not_trimmed(cls) -> None:
    data, batch = _batch(num_hops=3)
    model = cls(GraphMeta.from_data(data), TARGETS, 16, 16, num_layers=2).eval()
    assert model(batch)["Item"].size(0) == batch["Item"].num_nodes


@pytest.mark.parametrize("cls", [GCN, HGT, MGAT])
def test_trimmed_batches_give_the_same_gradients(cls) -> None:
    data, batch = _batch(num_hops=2)
    torch.manual_seed(0)
    model = cls(GraphMeta.from_data(data), TARGETS, 16, 16, dropout=0.0).train()
    grads = []
    for view in (_untrimmed(batch), batch):
        model.zero_grad()
        model(view)["Item"][:5].square().sum().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad, rtol=1e-4, atol=1e-5, msg=key)
