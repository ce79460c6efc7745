"""Early fusion: normalised modalities concatenated, then an MLP; no message passing."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import MLP

from mmgraph.gnn.models.base import EmbeddingModel, GraphMeta, num_nodes_dict, relu_dropout
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.inputs import ConcatInput, FeatureSkip


class EarlyFusion(EmbeddingModel):
    r"""Early-fusion baseline (feature-level fusion, as surveyed in `"Multimodal Machine
    Learning: A Survey and Taxonomy" <https://arxiv.org/abs/1705.09406>`_): each present modality
    L2-normalised, concatenated with the presence masks, projected per node type
    (:class:`~mmgraph.gnn.models.inputs.ConcatInput`) and reduced by an MLP shared by all types.
    Edges are ignored:

    .. math::
        \mathbf{z}_v = \mathrm{MLP}\left(\mathrm{ReLU}\left(\mathbf{W}_{\tau(v)}
        \left[ \tfrac{\mathbf{x}_{v,1}}{\lVert \mathbf{x}_{v,1} \rVert} \,\Vert\, \cdots
        \,\Vert\, \mathbb{1}[1 \in M_v], \ldots \right] + \mathbf{b}_{\tau(v)}\right)\right)
        + \mathbf{s}_v

    Args:
        meta (GraphMeta): The graph schema.
        target_edge_types (Sequence[Tuple[str, str, str]]): Edge types scored by the decoder.
        hidden_channels (int, optional): Hidden size. (default: :obj:`128`)
        out_channels (int, optional): Embedding size. (default: :obj:`128`)
        num_layers (int, optional): Linear layers of the MLP after the input projection.
            (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.2`)
        input_skip (bool, optional): Add :class:`~mmgraph.gnn.models.inputs.FeatureSkip` (the
            raw modalities, mapped per modality) to the output; the graph models have the same
            skip, so the two differ only in message passing. (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with the schema of ``meta``
        - **output:** per node type :math:`(n_t, F_{out})`
    """

    name = "early"
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
        self.input = ConcatInput(meta, hidden_channels, normalize=True)
        self.mlp = MLP([hidden_channels] * num_layers + [out_channels], dropout=dropout, norm=None)
        self.skip = FeatureSkip(meta, out_channels) if input_skip and meta.all_modalities else None
        self.decoder = DistMultDecoder(self.target_edge_types, out_channels)

    def reset_parameters(self) -> None:
        self.input.reset_parameters()
        if self.skip is not None:
            self.skip.reset_parameters()
        self.mlp.reset_parameters()
        self.decoder.reset_parameters()

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        num_nodes = num_nodes_dict(data, self.meta)
        out = {
            t: self.mlp(relu_dropout(x, self.dropout, self.training))
            for t, x in self.input(data, num_nodes).items()
        }
        return out if self.skip is None else self.skip.add_to(out, data, num_nodes)
