"""Hybrid fusion: an early-fusion score and the late per-modality scores, mixed by a learned
weight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from mmgraph.gnn.fusion.early import EarlyFusion
from mmgraph.gnn.fusion.late import LateFusion
from mmgraph.gnn.models.base import EmbeddingModel, GraphMeta


class HybridFusion(EmbeddingModel):
    r"""Hybrid-fusion baseline (as surveyed in `"Multimodal Machine Learning: A Survey and
    Taxonomy" <https://arxiv.org/abs/1705.09406>`_): the logit of an
    :class:`~mmgraph.gnn.fusion.early.EarlyFusion` model and that of a
    :class:`~mmgraph.gnn.fusion.late.LateFusion` model, mixed by a learned
    :math:`a \in (0, 1)`. Edges are ignored:

    .. math::
        s(u, r, v) = a \, s_{\mathrm{early}}(u, r, v) + (1 - a) \, s_{\mathrm{late}}(u, r, v),
        \qquad a = \sigma(\theta)

    :meth:`forward` returns :math:`[\sqrt{a}\,\mathbf{z}^{\mathrm{early}}_v \Vert
    \sqrt{1-a}\,\mathbf{z}^{\mathrm{late}}_v]`, width ``(1 + k) * out_channels`` for
    :math:`k` modalities (:attr:`embedding_dim`), so that dot products between embeddings
    follow the mixed score as for late fusion.

    Args:
        meta (GraphMeta): The graph schema (at least one modality).
        target_edge_types (Sequence[Tuple[str, str, str]]): Edge types scored by the decoders.
        hidden_channels (int, optional): Hidden size. (default: :obj:`128`)
        out_channels (int, optional): Size of the early and of each modality's embedding.
            (default: :obj:`128`)
        num_layers (int, optional): MLP layers of both parts. (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.2`)
        input_skip (bool, optional): Both parts add the input skip
            (:class:`~mmgraph.gnn.models.inputs.FeatureSkip`). (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with the schema of ``meta``
        - **output:** per node type :math:`(n_t, (1 + k) \cdot F_{out})`
    """

    name = "hybrid"
    uses_graph = False

    def __init__(
        self,
        meta: GraphMeta,
        target_edge_types: Sequence[Sequence[str]],
        hidden_channels: int = 128,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        input_skip: bool = True,
    ) -> None:
        super().__init__(
            meta, target_edge_types, hidden_channels, out_channels, num_layers, dropout
        )
        args = (
            meta,
            target_edge_types,
            hidden_channels,
            out_channels,
            num_layers,
            dropout,
            input_skip,
        )
        self.early = EarlyFusion(*args)
        self.late = LateFusion(*args)
        self.mix_logit = torch.nn.Parameter(torch.empty(()))
        self.reset_parameters()

    @property
    def embedding_dim(self) -> int:
        return self.early.embedding_dim + self.late.embedding_dim

    def reset_parameters(self) -> None:
        self.early.reset_parameters()
        self.late.reset_parameters()
        torch.nn.init.zeros_(self.mix_logit)

    def mix(self) -> Tensor:
        """The early-fusion share :math:`a` of the logit."""
        return torch.sigmoid(self.mix_logit)

    def modality_weights(self) -> dict[str, float]:
        """The late part's modality weights (see :meth:`LateFusion.modality_weights`)."""
        return self.late.modality_weights()

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        a = self.mix()
        early, late = self.early(data), self.late(data)
        return {
            t: torch.cat([a.sqrt() * early[t], (1 - a).sqrt() * late[t]], dim=-1) for t in early
        }

    def link_logits(
        self, z: Mapping[str, Tensor], edge_type: Sequence[str], edge_label_index: Tensor
    ) -> Tensor:
        early, late = self._parts(z)
        return self.early.link_logits(early, edge_type, edge_label_index) + self.late.link_logits(
            late, edge_type, edge_label_index
        )

    def candidate_logits(
        self, z: Mapping[str, Tensor], edge_type: Sequence[str], src: Tensor, dst: Tensor
    ) -> Tensor:
        early, late = self._parts(z)
        return self.early.candidate_logits(early, edge_type, src, dst) + self.late.candidate_logits(
            late, edge_type, src, dst
        )

    def _parts(self, z: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The early and the late blocks of hybrid embeddings."""
        width = self.early.embedding_dim
        return {t: x[:, :width] for t, x in z.items()}, {t: x[:, width:] for t, x in z.items()}
