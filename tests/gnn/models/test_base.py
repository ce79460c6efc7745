"""Shared pieces of the models: ReLU and dropout as one step that keeps a byte mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmgraph.gnn.models.base import relu_dropout


def test_relu_dropout_is_relu_in_evaluation() -> None:
    x = torch.randn(64, 8, requires_grad=True)
    got = relu_dropout(x * 1.0, 0.4, training=False)
    (grad,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(got, F.relu(x))
    torch.testing.assert_close(grad, (x > 0).float())


def test_relu_dropout_is_dropout_of_relu_in_training() -> None:
    """Each element is dropped or kept and scaled as dropout does, about ``1 - p`` of them
    kept, and the gradient flows through the kept positive ones alone, with the same scale."""
    x = torch.randn(400, 250, requires_grad=True)
    got = relu_dropout(x * 1.0, 0.4, training=True)
    (grad,) = torch.autograd.grad(got.sum(), x)
    kept = got != 0
    torch.testing.assert_close(got[kept], x[kept] / 0.6)
    torch.testing.assert_close(grad, kept.float() / 0.6)
    positive = x > 0
    assert not (kept & ~positive).any()
    assert kept[positive].float().mean().item() == pytest.approx(0.6, abs=0.01)


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
