"""DistMult link decoder: one learned diagonal relation per target edge type."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mmgraph.gnn.models.base import ModelConfigError, edge_key


class DistMultDecoder(torch.nn.Module):
    r"""The DistMult decoder from the `"Embedding Entities and Relations for Learning and
    Inference in Knowledge Bases" <https://arxiv.org/abs/1412.6575>`_ paper, one relation per
    target edge type:

    .. math::
        s(u, r, v) = \sum_k z_{u,k} \, w_{r,k} \, z_{v,k}

    with :math:`w_r` initialised to ones (a plain dot product).

    Args:
        edge_types (Sequence[Tuple[str, str, str]]): The edge types scored.
        channels (int): Embedding size.

    Shapes:
        - **input:** source and target embeddings :math:`(E, F)` each
        - **output:** logits :math:`(E,)`; :meth:`grouped`: :math:`(B, G, F)` sources and
          :math:`(B, K, F)` candidates give :math:`(B, G, K)`
    """

    def __init__(self, edge_types: Sequence[Sequence[str]], channels: int) -> None:
        super().__init__()
        if channels < 1:
            raise ModelConfigError(f"channels must be positive, got {channels!r}")
        self.edge_types = tuple(tuple(et) for et in edge_types)
        self.rel = torch.nn.ParameterDict(
            {edge_key(et): torch.nn.Parameter(torch.empty(channels)) for et in self.edge_types}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every relation back to ones."""
        for weight in self.rel.values():
            torch.nn.init.ones_(weight)

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
