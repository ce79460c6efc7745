"""Late fusion: one embedding per modality, link scores combined with learned weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import MLP

from mmgraph.gnn.models.base import (
    EmbeddingModel,
    GraphMeta,
    ModelConfigError,
    num_nodes_dict,
    relu_dropout,
)
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.inputs import FeatureSkip, ModalityInput


class LateFusion(EmbeddingModel):
    r"""Late-fusion baseline (decision-level fusion, as surveyed in `"Multimodal Machine
    Learning: A Survey and Taxonomy" <https://arxiv.org/abs/1705.09406>`_): one embedding per
    modality, from the modality's projection (:class:`~mmgraph.gnn.models.inputs.ModalityInput`)
    through an MLP of that modality shared by all node types, and one DistMult score per
    modality, combined with learned weights renormalised over the modalities present at both
    ends of the link. Edges are ignored:

    .. math::
        \mathbf{z}_{v,m} = \mathrm{MLP}_m(\mathrm{ReLU}(\mathbf{h}_{v,m})) + \mathbf{s}_{v,m},
        \qquad
        w = \mathrm{softmax}(\boldsymbol{\theta}), \qquad
        s(u, r, v) = \frac{\sum_{m \in M_u \cap M_v} w_m \, \mathrm{DistMult}_{r,m}
        (\mathbf{z}_{u,m}, \mathbf{z}_{v,m})}{\sum_{m \in M_u \cap M_v} w_m}

    (0 when the two ends share no modality), :math:`\mathbf{s}_{v,m}` the modality's input
    skip (:class:`~mmgraph.gnn.models.inputs.FeatureSkip`). A node with no modality at all
    stands its type's learned vector in for every modality.

    :meth:`forward` returns, per node, the concatenation
    :math:`[\sqrt{w_1}\,\mathbf{z}_{v,1} \Vert \cdots \Vert \sqrt{w_k}\,\mathbf{z}_{v,k}]`
    in :attr:`modalities` order, zero in the blocks of absent modalities, so that its width is
    ``len(modalities) * out_channels`` (:attr:`embedding_dim`) and a plain dot product between
    two such vectors is the weighted sum of per-modality dot products: nearest-neighbour search
    on these embeddings agrees with the fused score. :meth:`link_logits` reads which modalities
    are present from the non-zero blocks.

    Args:
        meta (GraphMeta): The graph schema (at least one modality).
        target_edge_types (Sequence[Tuple[str, str, str]]): Edge types scored by the decoder.
        hidden_channels (int, optional): Hidden size. (default: :obj:`128`)
        out_channels (int, optional): Size of each modality's embedding. (default: :obj:`128`)
        num_layers (int, optional): Linear layers of each modality's MLP after the input
            projection. (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.2`)
        input_skip (bool, optional): Add each modality's
            :class:`~mmgraph.gnn.models.inputs.FeatureSkip` to its embedding.
            (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with the schema of ``meta``
        - **output:** per node type :math:`(n_t, k \cdot F_{out})`, :math:`k` modalities
    """

    name = "late"
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
        self.modalities = meta.all_modalities
        if not self.modalities:
            raise ModelConfigError("meta has no modality: late fusion needs at least one")
        self.input = ModalityInput(meta, hidden_channels)
        self.mlps = torch.nn.ModuleDict(
            {
                m: MLP([hidden_channels] * num_layers + [out_channels], dropout=dropout, norm=None)
                for m in self.modalities
            }
        )
        self.skip = FeatureSkip(meta, out_channels) if input_skip else None
        self.modality_logits = torch.nn.Parameter(torch.empty(len(self.modalities)))
        self.decoder = DistMultDecoder(self.target_edge_types, self.embedding_dim)
        self.reset_parameters()

    @property
    def embedding_dim(self) -> int:
        return len(self.modalities) * self.out_channels

    def reset_parameters(self) -> None:
        self.input.reset_parameters()
        for mlp in self.mlps.values():
            mlp.reset_parameters()
        if self.skip is not None:
            self.skip.reset_parameters()
        torch.nn.init.zeros_(self.modality_logits)
        self.decoder.reset_parameters()

    def weights(self) -> Tensor:
        """The modality weights :math:`w` (``len(modalities)``,), summing to 1."""
        return torch.softmax(self.modality_logits, dim=0)

    def modality_weights(self) -> dict[str, float]:
        """Modality -> its learned weight :math:`w_m` (the weights sum to 1)."""
        return dict(zip(self.modalities, self.weights().tolist(), strict=True))

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        num_nodes = num_nodes_dict(data, self.meta)
        projected = self.input.project(data, num_nodes)
        skips = self.skip.project(data, num_nodes) if self.skip is not None else None
        scale = self.weights().sqrt()
        out = {}
        for t in self.meta.node_types:
            n = num_nodes[t]
            none = torch.ones(n, dtype=torch.bool, device=self.device)
            for _, mask in projected[t].values():
                none = none & ~mask
            fallback = self.input.fallback_vector(t, n)
            blocks = []
            for i, m in enumerate(self.modalities):
                if m in projected[t]:
                    h, mask = projected[t][m]
                    present = mask | none
                    h = torch.where(none.unsqueeze(-1), fallback, h)
                else:
                    present, h = none, fallback
                z = self.mlps[m](relu_dropout(h, self.dropout, self.training))
                if skips is not None and m in skips[t]:
                    z = z + skips[t][m][0]
                blocks.append(z * (scale[i] * present.to(z.dtype)).unsqueeze(-1))
            out[t] = torch.cat(blocks, dim=-1)
        return out

    def _presence(self, z: Tensor) -> Tensor:
        """``(n, k)``: which modality blocks of embeddings ``z`` are non-zero."""
        return (z.view(z.size(0), len(self.modalities), self.out_channels) != 0).any(dim=-1)

    def link_logits(
        self, z: Mapping[str, Tensor], edge_type: Sequence[str], edge_label_index: Tensor
    ) -> Tensor:
        edge_type = tuple(edge_type)
        z_src = z[edge_type[0]][edge_label_index[0]]
        z_dst = z[edge_type[2]][edge_label_index[1]]
        weighted = self.decoder(z_src, z_dst, edge_type)
        both = (self._presence(z_src) & self._presence(z_dst)).to(weighted.dtype)
        return self._normalised(weighted, both @ self.weights())

    def candidate_logits(
        self, z: Mapping[str, Tensor], edge_type: Sequence[str], src: Tensor, dst: Tensor
    ) -> Tensor:
        edge_type = tuple(edge_type)
        z_src, z_cand = z[edge_type[0]][src], z[edge_type[2]][dst]
        weighted = self.decoder.grouped(z_src, z_cand, edge_type)
        present_src = self._presence(z_src.flatten(0, 1)).view(*src.shape, -1)
        present_cand = self._presence(z_cand.flatten(0, 1)).view(*dst.shape, -1)
        norm = torch.bmm(
            present_src.to(weighted.dtype) * self.weights(),
            present_cand.to(weighted.dtype).transpose(1, 2),
        )
        return self._normalised(weighted, norm)

    @staticmethod
    def _normalised(weighted: Tensor, norm: Tensor) -> Tensor:
        """Logits divided by the weight of the modalities both ends carry (0 if they share none)."""
        return torch.where(norm > 0, weighted / norm.clamp(min=1e-12), weighted.new_zeros(()))
