"""The chunked attention layers give PyG's layers' values and gradients, in any number of
chunks, with the same state dicts."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GATConv, GATv2Conv, HGTConv
from torch_geometric.utils import scatter, softmax

from mmgraph.gnn.models import attention
from mmgraph.gnn.models.attention import (
    ChunkedGATConv,
    ChunkedGATv2Conv,
    ChunkedHGTConv,
    DstSorted,
)


def _graph(n: int = 60, m: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, m), generator=g)
    edge_index[1, :50] = 3  # a hub: one destination alone fills several chunks of 16 edges
    return torch.randn(n, 16, generator=g, requires_grad=True), edge_index


def _grads(module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize(
    ("pyg", "chunked"), [(GATConv, ChunkedGATConv), (GATv2Conv, ChunkedGATv2Conv)]
)
@pytest.mark.parametrize("chunk_edges", [16, 1 << 20])
def test_gat_layers_match_pyg(pyg, chunked, chunk_edges, monkeypatch) -> None:
    monkeypatch.setattr(attention, "CHUNK_EDGES", chunk_edges)
    x, edge_index = _graph()
    torch.manual_seed(0)
    reference = pyg(16, 8, heads=2)
    layer = chunked(16, 8, heads=2)
    layer.load_state_dict(reference.state_dict())
    expected = reference(x, edge_index)
    expected.square().sum().backward()
    want = [g.clone() for g in _grads(reference, x)]
    x.grad = None
    edges = DstSorted.with_self_loops(edge_index, x.size(0))
    assert len(edges.chunks(chunk_edges)) > (5 if chunk_edges == 16 else 0)
    got = layer(x, edges)
    got.square().sum().backward()
    torch.testing.assert_close(got, expected)
    for a, b in zip(_grads(layer, x), want, strict=True):
        torch.testing.assert_close(a, b)


def test_hgt_layer_matches_pyg(monkeypatch) -> None:
    monkeypatch.setattr(attention, "CHUNK_EDGES", 16)
    g = torch.Generator().manual_seed(1)
    x_dict = {
        "Item": torch.randn(30, 8, generator=g, requires_grad=True),
        "Tag": torch.randn(10, 8, generator=g, requires_grad=True),
    }
    has_tag = torch.stack(
        [torch.randint(0, 30, (120,), generator=g), torch.randint(0, 10, (120,), generator=g)]
    )
    edge_index_dict = {
        ("Item", "HAS_TAG", "Tag"): has_tag,
        ("Tag", "rev_HAS_TAG", "Item"): has_tag.flip(0),
        ("Item", "LIKE", "Item"): torch.randint(0, 30, (2, 90), generator=g),
    }
    metadata = (["Item", "Tag"], list(edge_index_dict))
    torch.manual_seed(0)
    reference = HGTConv(8, 8, metadata, heads=2)
    layer = ChunkedHGTConv(8, 8, metadata, heads=2)
    layer.load_state_dict(reference.state_dict())
    outputs = []
    for module in (reference, layer):
        for x in x_dict.values():
            x.grad = None
        out = module(x_dict, edge_index_dict)
        sum(h.square().sum() for h in out.values()).backward()
        outputs.append(
            (out, [x.grad.clone() for x in x_dict.values()] + [p.grad for p in module.parameters()])
        )
    (want, want_grads), (got, got_grads) = outputs
    for node_type in want:
        torch.testing.assert_close(got[node_type], want[node_type])
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("chunked", [ChunkedGATConv, ChunkedGATv2Conv])
def test_attention_dropout_gradients_match_finite_differences(chunked, monkeypatch) -> None:
    """With dropout on the attention weights, the backward pass rebuilds each chunk under the
    masks its forward pass drew: the gradient is that of the function the forward computed."""
    monkeypatch.setattr(attention, "CHUNK_EDGES", 16)
    x, edge_index = _graph()
    x = x.detach().double().requires_grad_()
    layer = chunked(16, 8, heads=2, dropout=0.5).double().train()
    edges = DstSorted.with_self_loops(edge_index, x.size(0))
    direction = torch.randn_like(x)

    def loss(inputs: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(7)  # the same dropout masks on every call
        return layer(inputs, edges).square().sum()

    loss(x).backward()
    eps = 1e-6
    with torch.no_grad():
        numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    torch.testing.assert_close((x.grad * direction).sum(), numeric)


def test_attention_with_fixed_weights_passes_gradients_to_the_values(monkeypatch) -> None:
    """When only the aggregated values need gradients (the scores read nothing that does), each
    value's gradient is its edges' weights times their destinations' gradients, in chunks as in
    one piece."""
    monkeypatch.setattr(attention, "CHUNK_EDGES", 16)
    x, edge_index = _graph()
    value = x.detach().view(-1, 2, 8).requires_grad_()
    logits = torch.randn(edge_index.size(1), 2, generator=torch.Generator().manual_seed(3))
    edges = DstSorted.build(edge_index, x.size(0))
    sorted_logits = logits[edges.perm]

    def score(chunk: attention.Chunk) -> torch.Tensor:
        return sorted_logits[chunk.part]

    attention.attend(edges, score, (value,)).square().sum().backward()
    got = value.grad.clone()
    value.grad = None
    alpha = softmax(logits, edge_index[1], num_nodes=x.size(0))
    messages = value[edge_index[0]] * alpha.unsqueeze(-1)
    scatter(messages, edge_index[1], dim=0, dim_size=x.size(0)).square().sum().backward()
    torch.testing.assert_close(got, value.grad)
