"""GCN's sparse products give PyG's GCNConv's values and gradients."""

from __future__ import annotations

import torch
from torch_geometric.nn import GCNConv

from mmgraph.gnn.models.gcn import Adjacency, _convolve, normalized_adjacency


def test_two_layers_on_one_adjacency_match_pyg() -> None:
    """Both layers' backward passes read the one transpose the adjacency builds."""
    g = torch.Generator().manual_seed(0)
    n = 40
    edge_index = torch.randint(0, n, (2, 300), generator=g)
    edge_index = torch.cat([edge_index, edge_index[:, :20]], dim=1)  # repeated edges
    x = torch.randn(n, 8, generator=g, requires_grad=True)
    torch.manual_seed(0)
    reference = [GCNConv(8, 8), GCNConv(8, 4)]
    layers = [GCNConv(8, 8, normalize=False), GCNConv(8, 4, normalize=False)]
    for layer, ref in zip(layers, reference, strict=True):
        layer.load_state_dict(ref.state_dict())

    want = reference[1](reference[0](x, edge_index).relu(), edge_index)
    want.square().sum().backward()
    want_grads = [x.grad.clone()] + [p.grad for ref in reference for p in ref.parameters()]
    x.grad = None
    adjacency = Adjacency(normalized_adjacency(edge_index, n, x.dtype))
    got = _convolve(layers[1], _convolve(layers[0], x, adjacency).relu(), adjacency)
    got.square().sum().backward()
    got_grads = [x.grad] + [p.grad for layer in layers for p in layer.parameters()]

    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_the_adjacency_and_its_transpose_hold_32_bit_indices() -> None:
    g = torch.Generator().manual_seed(1)
    n = 30
    edge_index = torch.randint(0, n, (2, 200), generator=g)
    adjacency = Adjacency(normalized_adjacency(edge_index, n, torch.float32))
    transposed = adjacency.transposed()
    for matrix in (adjacency.matrix, transposed):
        assert matrix.crow_indices().dtype == matrix.col_indices().dtype == torch.int32
    torch.testing.assert_close(transposed.to_dense(), adjacency.matrix.to_dense().t())
