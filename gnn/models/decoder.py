"""DistMult link decoder: one learned diagonal relation per target edge type."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmgraph.gnn.models.base import ModelConfigError, edge_key

SCALE = 20.0


class DistMultDecoder(torch.nn.Module):
    r"""The DistMult decoder from the `"Embedding Entities and Relations for Learning and
    Inference in Knowledge Bases" <https://arxiv.org/abs/1412.6575>`_ paper, one relation per
    target edge type:

    .. math::
        s(u, r, v) = \sum_k z_{u,k} \, w_{r,k} \, z_{v,k}

    with :math:`w_r` initialised to ``scale`` times ones: a dot product at a softmax
    temperature of ``1 / scale``. The models' embeddings start near unit norm (the input skip
    maps L2-normalised inputs orthogonally), so a plain dot product gives logits within about
    ±1, too flat for a softmax over 128 negatives, and Adam grows :math:`w_r` by about the
    learning rate a step: training spent its first hundred full-batch epochs on the scale.

    Args:
        edge_types (Sequence[Tuple[str, str, str]]): The edge types scored.
        channels (int): Embedding size.
        scale (float): The relations' initial value.

    Shapes:
        - **input:** source and target embeddings :math:`(E, F)` each
        - **output:** logits :math:`(E,)`; :meth:`grouped`: :math:`(B, G, F)` sources and
          :math:`(B, K, F)` candidates give :math:`(B, G, K)`
    """

    def __init__(
        self, edge_types: Sequence[Sequence[str]], channels: int, scale: float = SCALE
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ModelConfigError(f"channels must be positive, got {channels!r}")
        if not scale > 0:
            raise ModelConfigError(f"scale must be positive, got {scale!r}")
        self.scale = scale
        self.edge_types = tuple(tuple(et) for et in edge_types)
        self.rel = torch.nn.ParameterDict(
            {edge_key(et): torch.nn.Parameter(torch.empty(channels)) for et in self.edge_types}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every relation back to ``scale`` times ones."""
        for weight in self.rel.values():
            torch.nn.init.constant_(weight, self.scale)

    def relation(self, edge_type: Sequence[str]) -> Tensor:
        """The diagonal of ``edge_type``; refuses an edge type that is not a target."""
        key = edge_key(edge_type)
        if key not in self.rel:
            raise ModelConfigError(
                f"edge_type {tuple(edge_type)!r} is not a target edge type "
                f"(targets: {list(self.edge_types)})"
            )
        return self.rel[key]

    def forward(self, z_src: Tensor, z_dst: Tensor, edge_type: Sequence[str]) -> Tensor:
        return (z_src * self.relation(edge_type) * z_dst).sum(dim=-1)

    def grouped(self, z_src: Tensor, z_cand: Tensor, edge_type: Sequence[str]) -> Tensor:
        """Every source of a group against every candidate of the same group (one ``bmm``)."""
        return torch.bmm(z_src * self.relation(edge_type), z_cand.transpose(1, 2))
