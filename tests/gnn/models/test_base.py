"""Shared pieces of the models: ReLU and dropout as one step that keeps a byte mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmgraph.gnn.models.base import relu_dropout


@pytest.mark.parametrize("training", [True, False])
def test_relu_dropout_is_dropout_of_relu(training: bool) -> None:
    x = torch.randn(64, 8, requires_grad=True)
    torch.manual_seed(3)
    expected = F.dropout(x.relu(), p=0.4, training=training)
    (grad_expected,) = torch.autograd.grad(expected.sum(), x)
    torch.manual_seed(3)
    got = relu_dropout(x * 1.0, 0.4, training)
    (grad_got,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad_got, grad_expected)


@pytest.mark.parametrize("shape", [(0, 8), (5, 8)])
def test_relu_dropout_leaves_a_parameters_view_alone(shape: tuple[int, int]) -> None:
    # An expanded parameter (a node type's learned vector) with no rows or some: dropout hands
    # an empty input back as it is, and it must not be changed in place.
    vector = torch.nn.Parameter(torch.randn(shape[1]))
    before = vector.detach().clone()
    out = relu_dropout(vector.unsqueeze(0).expand(*shape), 0.5, training=True)
    out.sum().backward()
    assert out.shape == shape
    torch.testing.assert_close(vector.detach(), before)


def test_relu_dropout_keeps_one_byte_per_element() -> None:
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    x = torch.randn(64, 8, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        relu_dropout(x * 1.0, 0.4, training=True)
    assert [(t.dtype, t.shape) for t in saved] == [(torch.bool, x.shape)]
