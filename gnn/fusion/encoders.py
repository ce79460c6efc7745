"""Per-modality encoders into one shared space: the input half of the autoencoder and of the
adversarial alignment model."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import MLP

from mmgraph.gnn.models.base import GraphMeta
from mmgraph.gnn.models.inputs import modality_sizes, read_modality


class ModalityEncoders(torch.nn.Module):
    r"""One MLP per modality, shared by every node type that carries the modality (a tag's text
    and an emoji's label come from one text encoder, so one map keeps them comparable), from
    the L2-normalised modality into one space. A node's fused code is the mean of the codes of
    the modalities it has, its type's learned vector when it has none:

    .. math::
        \mathbf{c}_{v,m} = f_m\left(\frac{\mathbf{x}_{v,m}}{\lVert \mathbf{x}_{v,m} \rVert}
        \right), \qquad
        \mathbf{h}_v = \begin{cases} \frac{1}{|M_v|} \sum_{m \in M_v} \mathbf{c}_{v,m}
        & M_v \neq \emptyset \\ \mathbf{e}_{\tau(v)} & \text{otherwise} \end{cases}

    Args:
        meta (GraphMeta): The graph schema (a modality must have one size on every node type).
        hidden_channels (int): Hidden size of each encoder.
        out_channels (int): Size of the shared space.
        num_layers (int): Hidden layers of each encoder (it has ``num_layers + 1`` linear
            layers).
        dropout (float): Dropout between layers.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` and the node count per type, or
          raw rows :math:`(n, d_m)` of one modality (:meth:`encode_rows`)
        - **output:** per type, per modality ``(code, mask)`` of shapes :math:`(n, F_{out})`,
          :math:`(n,)` (:meth:`encode`, codes zero where the modality is absent), or the fused
          :math:`(n, F_{out})` (:meth:`fuse`)
    """

    def __init__(
        self,
        meta: GraphMeta,
        hidden_channels: int,
        out_channels: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.meta = meta
        self.sizes = modality_sizes(meta)
        self.out_channels = out_channels
        self.mlps = torch.nn.ModuleDict(
            {
                m: MLP(
                    [dim] + [hidden_channels] * num_layers + [out_channels],
                    dropout=dropout,
                    norm=None,
                )
                for m, dim in self.sizes.items()
            }
        )
        self.fallback = torch.nn.ParameterDict(
            {t: torch.nn.Parameter(torch.empty(out_channels)) for t in meta.node_types}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for mlp in self.mlps.values():
            mlp.reset_parameters()
        for vector in self.fallback.values():
            torch.nn.init.normal_(vector, std=0.1)

    def encode_rows(self, modality: str, x: Tensor) -> Tensor:
        """Codes of raw rows of ``modality`` (every row taken as present)."""
        return self.mlps[modality](F.normalize(x, dim=-1))

    def encode(
        self, data: HeteroData, num_nodes: Mapping[str, int]
    ) -> dict[str, dict[str, tuple[Tensor, Tensor]]]:
        """Node type -> modality -> ``(code, mask)``, the code zero where the modality is
        absent."""
        ref = next(iter(self.fallback.values()))
        out: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
        for t in self.meta.node_types:
            out[t] = {}
            for m, dim in self.meta.modalities[t].items():
                x, mask = read_modality(data, t, m, dim, num_nodes[t], ref)
                code = self.encode_rows(m, x) * mask.unsqueeze(-1).to(ref.dtype)
                out[t][m] = (code, mask)
        return out

    def fuse(
        self, codes: Mapping[str, Mapping[str, tuple[Tensor, Tensor]]], num_nodes: Mapping[str, int]
    ) -> dict[str, Tensor]:
        """Per node type the mean of each node's present codes, its type's vector where none
        is."""
        out = {}
        for t in self.meta.node_types:
            fallback = self.fallback[t].unsqueeze(0).expand(num_nodes[t], -1)
            total = sum((c for c, _ in codes[t].values()), torch.zeros_like(fallback))
            count = sum(
                (mask.to(fallback.dtype) for _, mask in codes[t].values()),
                fallback.new_zeros(num_nodes[t]),
            )
            mean = total / count.clamp(min=1.0).unsqueeze(-1)
            out[t] = torch.where((count > 0).unsqueeze(-1), mean, fallback)
        return out
